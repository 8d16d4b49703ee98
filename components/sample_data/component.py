from kfp import dsl

from oblivio_pipeline import component


@component
def sample_data(model: dsl.Input[dsl.Model], dataset_uri: str, forget_classes: str,
                forget_ids_uri: str, retain_per_class: int, forget_samples: int,
                val_per_class: int, val_forget_samples: int, seed: int, job_id: str,
                deletion_batch: str,
                samples: dsl.Output[dsl.Dataset]) -> None:
    """Draw the retain, forget and validation sample lists from the training split, or, for a
    deletion request (``forget_ids_uri``), check it and keep it as the forget list.

    Args:
        model: The model to unlearn from (classes it already forgot are never retained).
        dataset_uri: Dataset directory or s3:// URI in oblivio's contract.
        forget_classes: Classes to forget, indices or names, comma-separated.
        forget_ids_uri: Text or Parquet file of training sample ids ("" for class forgetting).
        retain_per_class: Retain samples per kept class.
        forget_samples: Samples of the forget classes.
        val_per_class: Validation samples per kept class (alpha selection).
        val_forget_samples: Validation samples of the forget classes.
        seed: Seed of the draws.
        job_id: The pipeline job's id (its MLflow run gets the lists as inputs).
        deletion_batch: The deletion-batch part the run honours ("" for none).
        samples: A folder of retain/forget/validation Parquet id lists and plan.json.
    """
    from oblivio.steps import sample_request_step
    from oblivio.tracking.runs import log_sample_sets, run_key

    samples.metadata.update(sample_request_step(
        model.path, dataset_uri, forget_classes, forget_ids_uri, samples.path, retain_per_class,
        forget_samples, val_per_class, val_forget_samples, seed))
    log_sample_sets(run_key(job_id, deletion_batch), samples.path, dataset_uri)
