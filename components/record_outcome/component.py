from kfp import dsl

from oblivio_pipeline import control_component


@control_component
def record_outcome(job_id: str, deletion_batch: str,
                   status: dsl.PipelineTaskFinalStatus) -> None:
    """Exit handler: close the run's MLflow run as FINISHED (any success state a backend
    reports), KILLED (cancelled), or FAILED with the state and error.

    Args:
        job_id: The pipeline job's id.
        deletion_batch: The deletion-batch part the run honours ("" for none).
        status: The final status of the pipeline's tasks.
    """
    from oblivio.tracking.runs import finish_run, run_key

    finish_run(run_key(job_id, deletion_batch), status.state, status.error_message)
