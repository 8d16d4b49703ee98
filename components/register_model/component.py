from kfp import dsl

from oblivio_pipeline import component


@component
def register_model(unlearned: dsl.Input[dsl.Model], report: dsl.Input[dsl.Artifact],
                   model_name: str, parent_version: str, deletion_batch: str,
                   max_forget_acc: float, max_retain_drop: float, min_mia_efficacy: float,
                   max_reestimated_forget_acc: float, instance_max_test_drop: float,
                   instance_auc_z: float, instance_auc_one_sided: bool, promote: bool,
                   job_id: str, job_name: str) -> str:
    """Register the unlearned model with its lineage; promote it when the gates pass.

    Args:
        unlearned: The unlearned model directory.
        report: The evaluation report folder.
        model_name: Registered model name.
        parent_version: The version it was unlearned from.
        deletion_batch: Id of the deletion batch this run honours ("" for none).
        max_forget_acc: Gate: highest forget accuracy allowed.
        max_retain_drop: Gate: largest retain accuracy drop allowed vs the parent.
        min_mia_efficacy: Gate: lowest MIA-efficacy (confidence) allowed.
        max_reestimated_forget_acc: Gate: highest forget accuracy once batch norm is
            re-estimated on kept data (not judged for a model without batch norm).
        instance_max_test_drop: Gate for deletion requests: largest test accuracy drop.
        instance_auc_z: Gate for deletion requests: spreads of the loss attack's AUC allowed
            between the result and 0.5.
        instance_auc_one_sided: Gate for deletion requests: fail only a result still more
            familiar than unseen images (for mislabelled or poisoned images).
        promote: Make it champion when the gates pass.
        job_id: The pipeline job's id.
        job_name: The pipeline job's name (lineage tag).

    Returns:
        The new version number.
    """
    import json

    from oblivio.deletion.publish import register_unlearned
    from oblivio.evaluation.gates import Gates
    from oblivio.tracking.runs import run_key

    result = register_unlearned(unlearned.path, report.path, model_name, parent_version,
                                run_key(job_id, deletion_batch),
                                job_name, Gates(max_forget_acc=max_forget_acc,
                                                max_retain_drop=max_retain_drop,
                                                min_mia_efficacy=min_mia_efficacy,
                                                max_reestimated_forget_acc=max_reestimated_forget_acc,
                                                instance_max_test_drop=instance_max_test_drop,
                                                instance_auc_z=instance_auc_z,
                                                instance_auc_one_sided=instance_auc_one_sided),
                                deletion_batch, promote)
    print(json.dumps(result))
    return result["version"]
