"""One MLflow run per pipeline run: every step finds it by the pipeline's job id (a tag), logs
into it, and the exit handler closes it as FINISHED or FAILED."""

from __future__ import annotations

import json
import os
from pathlib import Path

from oblivio.errors import OblivioError
from oblivio.evaluation.gates import flat_metrics
from oblivio.runner import RUNNER_ENV, runner_alive
from oblivio.tracking.registry import TAG, client
from oblivio.tracking.store import connect

JOB_TAG = f"{TAG}pipeline_run"
RUNNER_TAG = f"{TAG}runner"


def run_key(job_id: str, deletion_batch: str = "") -> str:
    """The key of a pipeline run's MLflow run: its job's id, and the deletion-batch part it
    honours when it has one. A deletion batch's job runs the unlearning pipeline once per part
    (classes, then images), and each part needs its own run: its own params, metrics, report
    and model version."""
    return f"{job_id}/{deletion_batch}" if deletion_batch else job_id


def _find(experiment_id: str, job_id: str):
    found = client().search_runs([experiment_id], f"tags.`{JOB_TAG}` = '{job_id}'",
                                 max_results=1)
    return found[0] if found else None


def start_run(job_id: str, job_name: str, params: dict) -> str:
    """The MLflow run of pipeline job ``job_id`` (created on first call), with its params."""
    experiment_id = connect()
    run = _find(experiment_id, job_id)
    if run is None:
        tags = {JOB_TAG: job_id}
        if os.environ.get(RUNNER_ENV):
            tags[RUNNER_TAG] = os.environ[RUNNER_ENV]
        run = client().create_run(experiment_id, run_name=job_name or None, tags=tags)
    for key, value in params.items():
        client().log_param(run.info.run_id, key, value)
    return run.info.run_id


def run_id_of(job_id: str) -> str:
    run = _find(connect(), job_id)
    if run is None:
        raise OblivioError(f"no MLflow run for pipeline job {job_id}")
    return run.info.run_id


#: What ``PipelineTaskFinalStatus.state`` holds when the pipeline's tasks succeeded: the MLMD
#: execution states the MLMD-based drivers report (backend/src/v2/driver/resolve.go,
#: resolveInputParameter: ``GetLastKnownState().String()``, COMPLETE or CACHED), and the task
#: API's and kfp.local's SUCCEEDED.
SUCCESS_STATES = frozenset({"SUCCEEDED", "COMPLETE", "CACHED"})
#: States of a run someone stopped: MLMD's CANCELED, the task API's CANCELED and CANCELING.
KILLED_STATES = frozenset({"CANCELED", "CANCELLED", "CANCELING"})


def run_status(state: str) -> str:
    """The MLflow run status a pipeline's final task state maps to: FINISHED, KILLED or
    FAILED (anything unknown is a failure, never a success)."""
    state = (state or "").upper()
    if state in SUCCESS_STATES:
        return "FINISHED"
    return "KILLED" if state in KILLED_STATES else "FAILED"


def finish_run(job_id: str, state: str, error: str | None = None) -> None:
    """Close the job's run: FINISHED when the pipeline succeeded, KILLED or FAILED (with why,
    the backend's state when it gave no message) otherwise."""
    run = _find(connect(), job_id)
    if run is None:
        return  # the pipeline failed before its first MLflow step: nothing to close
    status = run_status(state)
    if status != "FINISHED":
        reason = f"{state}: {error}" if error else f"the pipeline ended {state or 'with no state'}"
        client().set_tag(run.info.run_id, f"{TAG}failure", reason[:5000])
    client().set_terminated(run.info.run_id, status)


def close_abandoned_runs(runner: str | None = None) -> list[str]:
    """Mark KILLED, with the reason, every RUNNING run of a local pipeline whose process on this
    host is gone (``oblivio run`` killed before its exit handler could close it), or of
    ``runner``, which is stopping now (interrupted). Returns the pipeline jobs closed."""
    experiment_id = connect()
    running = client().search_runs([experiment_id],
                                   f"attributes.status = 'RUNNING' and tags.`{RUNNER_TAG}` != ''")
    closed = []
    for run in running:
        owner = run.data.tags.get(RUNNER_TAG, "")
        if owner and (owner == runner if runner else not runner_alive(owner)):
            how = "was interrupted" if runner else "ended without closing this run: it was killed"
            client().set_tag(run.info.run_id, f"{TAG}failure",
                             f"the local run ({owner}) {how}; nothing it had not registered was "
                             "registered")
            client().set_terminated(run.info.run_id, "KILLED")
            closed.append(run.data.tags.get(JOB_TAG, run.info.run_id))
    return closed


def log_report(job_id: str, report_dir: str) -> dict[str, float]:
    """Log a report's metrics and files (JSON, Markdown, HTML, plots) into the job's run."""
    from mlflow.entities import Metric

    run_id = run_id_of(job_id)
    report = json.loads(Path(report_dir, "report.json").read_text())
    metrics = flat_metrics(report)
    client().log_batch(run_id, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
    client().log_artifacts(run_id, report_dir, "report")
    return metrics


def log_sample_sets(job_id: str, samples_dir: str, dataset_uri: str) -> None:
    """Log the retain / forget / validation id lists (a deletion request: the forget list
    alone) as the run's dataset inputs (by digest and size), and the lists as artifacts; of a
    deletion request only its plan (digest and count): the ids live in the ledger alone, and
    a copy in the run would outlive their erasure."""
    import mlflow
    import pandas as pd

    run_id = run_id_of(job_id)
    inputs = []
    for name in ("retain", "forget", "validation"):
        if not Path(samples_dir, f"{name}.parquet").exists():
            continue
        frame = pd.read_parquet(Path(samples_dir, f"{name}.parquet"))
        if frame.empty:  # mlflow cannot digest an empty frame
            continue
        dataset = mlflow.data.from_pandas(frame, source=dataset_uri, name=f"{name}-samples")
        inputs.append(mlflow.entities.DatasetInput(dataset._to_mlflow_entity(), [
            mlflow.entities.InputTag("mlflow.data.context", name)]))
    client().log_inputs(run_id, datasets=inputs)
    plan = Path(samples_dir, "plan.json")
    if json.loads(plan.read_text()).get("mode") == "instance":
        client().log_artifact(run_id, str(plan), "samples")
    else:
        client().log_artifacts(run_id, samples_dir, "samples")
