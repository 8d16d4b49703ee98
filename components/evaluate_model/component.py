
from kfp import dsl

from oblivio_pipeline import component


@component
def evaluate_model(original: dsl.Input[dsl.Model], unlearned: dsl.Input[dsl.Model],
                   original_train: dsl.Input[list[dsl.Artifact]],
                   unlearned_train: dsl.Input[list[dsl.Artifact]],
                   dataset_uri: str, forget_ids_uri: str, device: str, job_id: str,
                   deletion_batch: str,
                   relearn_steps: int, metrics: dsl.Output[dsl.Metrics],
                   report: dsl.Output[dsl.Artifact], summary: dsl.Output[dsl.Markdown],
                   html: dsl.Output[dsl.HTML],
                   batch_hold: str = "", shadows_uri: str = "") -> None:
    """Accuracy, membership-inference attacks, a linear probe and (classes) batch norm
    re-estimated on kept images, original beside unlearned.

    Judged on everything the unlearned model has forgotten, this run's and earlier ones: its
    classes, or (after a deletion request) all the training images it has forgotten.

    Args:
        original: The parent model.
        unlearned: The unlearned model.
        original_train: The parent's training-split outputs, the shards of predict_outputs.
        unlearned_train: The unlearned model's training-split outputs, likewise.
        dataset_uri: Dataset directory or s3:// URI.
        forget_ids_uri: This run's deletion request ("" for classes): with the ledger, where
            the images it forgot are read from (models record them by digest only).
        device: cpu, cuda or auto.
        job_id: The pipeline job's id (metrics and report go to its MLflow run).
        deletion_batch: The deletion-batch part the run honours ("" for none).
        relearn_steps: Also fine-tune each model on a few forgotten images for up to this many
            steps and report when the class returns (0: off; classes only).
        metrics: Flat numeric metrics for the KFP UI.
        report: The report folder (JSON, Markdown, HTML, plots).
        summary: The report's Markdown table.
        html: The report's self-contained HTML page.
        batch_hold: The deletion batch's claim from claim_batch ("" outside a batch): its
            lease is renewed while this step works, and the step fails once the batch is lost.
        shadows_uri: The original's shadow models (`oblivio pool shadows`, directory or s3://
            URI; "" for none): a deletion request is also judged image by image against the
            shadows that never saw each image, and promotion holds the version to that verdict.
            Classes are not judged on them.
    """
    import shutil

    from oblivio.deletion.batches import held
    from oblivio.evaluation.evaluate import evaluate_unlearned
    from oblivio.evaluation.relearn import RelearnSettings
    from oblivio.evaluation.report import markdown
    from oblivio.tracking.runs import log_report, run_key

    parts = {"model": [a.path for a in unlearned_train],
             "original": [a.path for a in original_train]}
    relearning = RelearnSettings(max_steps=relearn_steps) if relearn_steps else None
    with held(batch_hold):
        result = evaluate_unlearned(unlearned.path, dataset_uri, report.path, original.path,
                                    device, train_parts=parts, relearning=relearning,
                                    request_ids=forget_ids_uri or None,
                                    shadows=shadows_uri or None)
    for key, value in log_report(run_key(job_id, deletion_batch), report.path).items():
        metrics.log_metric(key, value)
    with open(summary.path, "w") as f:
        f.write(markdown(result))
    shutil.copyfile(f"{report.path}/report.html", html.path)
