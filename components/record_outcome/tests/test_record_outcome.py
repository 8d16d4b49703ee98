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
    assert run.data.tags["oblivio.failure"] == "FAILED: capture: out of memory"


# The MLMD-based drivers report MLMD's execution state (backend/src/v2/driver/resolve.go,
# resolveInputParameter, TaskFinalStatus case: GetLastKnownState().String()); the task API and
# kfp.local report SUCCEEDED.
@pytest.mark.parametrize("state", ["SUCCEEDED", "COMPLETE", "CACHED"])
def test_every_success_state_a_backend_emits_closes_the_run_finished(job: str,
                                                                     state: str) -> None:
    record_outcome.python_func(job_id=job, deletion_batch="", status=status(state))
    run = client().get_run(run_id_of(job))
    assert run.info.status == "FINISHED"
    assert "oblivio.failure" not in run.data.tags


@pytest.mark.parametrize("state", ["CANCELED", "CANCELING"])
def test_a_stopped_run_closes_killed_with_the_state(job: str, state: str) -> None:
    record_outcome.python_func(job_id=job, deletion_batch="", status=status(state))
    run = client().get_run(run_id_of(job))
    assert run.info.status == "KILLED"
    assert run.data.tags["oblivio.failure"] == f"the pipeline ended {state}"


@pytest.mark.parametrize("state", ["FAILED", "RUNNING", ""])
def test_a_state_that_is_not_success_never_closes_finished(job: str, state: str) -> None:
    record_outcome.python_func(job_id=job, deletion_batch="", status=status(state))
    assert client().get_run(run_id_of(job)).info.status == "FAILED"


def test_a_job_that_failed_before_mlflow_has_nothing_to_close(sqlite_mlflow: str) -> None:
    record_outcome.python_func(job_id="never-started", deletion_batch="",
                               status=status("FAILED", "bad input"))
    with pytest.raises(OblivioError, match="no MLflow run for pipeline job never-started"):
        run_id_of("never-started")  # nothing was created just to be closed
