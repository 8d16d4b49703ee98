import pytest
from kfp import dsl

from oblivio.errors import OblivioError
from oblivio.tracking.registry import client
from oblivio.tracking.runs import run_id_of
from oblivio_pipeline.components import record_outcome


def status(state: str, error: str | None = None) -> dsl.PipelineTaskFinalStatus:
    return dsl.PipelineTaskFinalStatus(state=state, pipeline_job_resource_name="jobs/1",
                                       pipeline_task_name="exit-handler-1", error_code=None,
                                       error_message=error)


def test_closes_the_run_failed_with_the_reason(job: str) -> None:
    record_outcome.python_func(job_id=job, deletion_batch="",
                               status=status("FAILED", "capture: out of memory"))
    run = client().get_run(run_id_of(job))
    assert run.info.status == "FAILED"
    assert run.data.tags["oblivio.failure"] == "capture: out of memory"


def test_closes_the_run_finished(job: str) -> None:
    record_outcome.python_func(job_id=job, deletion_batch="", status=status("SUCCEEDED"))
    assert client().get_run(run_id_of(job)).info.status == "FINISHED"


def test_a_job_that_failed_before_mlflow_has_nothing_to_close(sqlite_mlflow: str) -> None:
    record_outcome.python_func(job_id="never-started", deletion_batch="",
                               status=status("FAILED", "bad input"))
    with pytest.raises(OblivioError, match="no MLflow run for pipeline job never-started"):
        run_id_of("never-started")  # nothing was created just to be closed
