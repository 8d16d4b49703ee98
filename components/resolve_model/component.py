from kfp import dsl

from oblivio_pipeline import component


@component
def resolve_model(model_uri: str, job_id: str, job_name: str, deletion_batch: str,
                  dataset_uri: str,
                  forget_classes: str, forget_ids_uri: str, class_method: str, alpha_mode: str,
                  ratio_mode: str, seed: int, model: dsl.Output[dsl.Model]) -> str:
    """Check the run's choices, download the registered model and open the pipeline run's
    MLflow run (with those choices as its params).

    Args:
        model_uri: Registry URI of the model to unlearn from, e.g. models:/NAME@champion.
        job_id: The pipeline job's id; names the MLflow run every step logs into.
        job_name: The pipeline job's name, used as the MLflow run name.
        deletion_batch: The deletion-batch part the run honours ("" for none): its own
            MLflow run within the job.
        dataset_uri: The dataset (logged).
        forget_classes: Classes to forget (logged; used when forget_ids_uri is empty).
        forget_ids_uri: The deletion request, if any (logged).
        class_method: A class method with a pipeline branch (checked).
        alpha_mode: projection: auto or fixed (checked).
        ratio_mode: contrast: auto or fixed (checked).
        seed: Seed of the draws (logged).
        model: The oblivio model directory of the parent version.

    Returns:
        The parent version number.
    """
    from oblivio.deletion.publish import resolve_parent
    from oblivio.tracking.runs import run_key

    name = f"{job_name} {deletion_batch}" if deletion_batch else job_name
    parent = resolve_parent(model_uri, model.path, run_key(job_id, deletion_batch), name, {
        "dataset_uri": dataset_uri, "forget_classes": forget_classes,
        "forget_ids_uri": forget_ids_uri, "class_method": class_method,
        "alpha_mode": alpha_mode, "ratio_mode": ratio_mode, "seed": seed})
    model.metadata.update(parent)
    return parent["version"]
