from kfp import dsl

from oblivio_pipeline import component


@component
def record_outcome(job_id: str, status: dsl.PipelineTaskFinalStatus) -> None:
    """Exit handler: close the run's MLflow run as FINISHED, or FAILED with the error.

    Args:
        job_id: The pipeline job's id.
        status: The final status of the pipeline's tasks.
    """
    from oblivio.tracking.runs import finish_run

    finish_run(job_id, status.state, status.error_message)
