
from oblivio_pipeline import component


@component
def validate_request(model_uri: str, dataset_uri: str, forget_classes: str,
                     forget_ids_uri: str, class_method: str, instance_method: str,
                     alpha_mode: str, ratio_mode: str, relearn_steps: int, shards: int,
                     max_forget_acc: float, max_retain_drop: float, min_mia_efficacy: float,
                     max_reestimated_forget_acc: float, instance_max_test_drop: float,
                     instance_auc_z: float, shadows_uri: str = "",
                     instance_max_seconds: float = 0.0) -> str:
    """Check everything about the run that no retry can fix, before any other step: the
    choices, the registered model, the dataset, and the classes or the deletion request.
    The pipeline never retries this step.

    Args:
        model_uri: Registry URI of the model to unlearn from, e.g. models:/NAME@champion.
        dataset_uri: Dataset directory or s3:// URI.
        forget_classes: Classes to forget (used when forget_ids_uri is empty).
        forget_ids_uri: A deletion request: text or Parquet file of training sample ids.
        class_method: A class method with a pipeline branch.
        instance_method: An instance method with a pipeline branch.
        alpha_mode: projection: auto or fixed.
        ratio_mode: contrast: auto or fixed.
        relearn_steps: The evaluation's relearning cap (0: off).
        shards: Tasks the capture and the evaluation's pass spread over (1 to 256).
        max_forget_acc: Gate (a fraction in [0, 1], as every gate but instance_auc_z).
        max_retain_drop: Gate.
        min_mia_efficacy: Gate.
        max_reestimated_forget_acc: Gate.
        instance_max_test_drop: Gate.
        instance_auc_z: Gate: spreads from 0.5 (a positive number).
        shadows_uri: The original's shadow models ("" for none): finished, and trained on
            this dataset's training split.
        instance_max_seconds: The instance method's budget in seconds (0 or more; 0: none).

    Returns:
        The registered version the alias pointed at when checked.
    """
    from oblivio.steps import check_request_step

    return check_request_step(model_uri, dataset_uri, forget_classes, forget_ids_uri, {
        "class_method": class_method, "instance_method": instance_method,
        "alpha_mode": alpha_mode, "ratio_mode": ratio_mode,
        "relearn_steps": relearn_steps, "shards": shards, "max_forget_acc": max_forget_acc,
        "max_retain_drop": max_retain_drop, "min_mia_efficacy": min_mia_efficacy,
        "max_reestimated_forget_acc": max_reestimated_forget_acc,
        "instance_max_test_drop": instance_max_test_drop,
        "instance_auc_z": instance_auc_z, "instance_max_seconds": instance_max_seconds,
        "shadows_uri": shadows_uri})["version"]
