"""``oblivio pipeline schedule``: put the deletion-batch pipeline on a Kubeflow Pipelines
schedule. It uploads the compiled pipeline (a new version of it when it exists), and replaces
the recurring run of the same name with one on that version: at most one run at a time and no
catch-up, since a batch claims everything pending and a backlog of runs would claim nothing."""

from __future__ import annotations

import re
import time
from pathlib import Path

from oblivio.errors import OblivioError

PIPELINE = "oblivio-deletion-batch"
#: Kubeflow's cron has six fields, seconds first (robfig/cron)
CRON = re.compile(r"^\s*(\S+\s+){5}\S+\s*$")


def schedule(host: str, cron: str, experiment: str = "oblivio", job_name: str = PIPELINE,
             params: dict | None = None, package: Path | None = None,
             namespace: str | None = None) -> dict:
    """Upload and schedule; returns the ids Kubeflow gave (pipeline, version, experiment,
    recurring run) and the recurring runs it replaced."""
    import kfp
    from kfp_server_api.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if not CRON.match(cron):
        raise OblivioError(f"--cron {cron!r}: Kubeflow takes six fields, seconds first "
                           "(e.g. '0 0 2 * * *': every day at 02:00)")
    if package is None:
        from oblivio_pipeline.pipelines import oblivio_deletion_batch

        package = Path(oblivio_deletion_batch.__file__).parent / "pipeline.yaml"
    _check_reachable(host)
    try:
        client = kfp.Client(host=host, namespace=namespace or "kubeflow")
        pipeline_id = client.get_pipeline_id(PIPELINE)
        version = time.strftime("%Y%m%d-%H%M%S")
        if pipeline_id is None:
            pipeline_id = client.upload_pipeline(str(package), PIPELINE).pipeline_id
        version_id = client.upload_pipeline_version(
            str(package), f"{PIPELINE}-{version}", pipeline_id=pipeline_id).pipeline_version_id
        experiment_id = client.create_experiment(experiment,
                                                 namespace=namespace).experiment_id
        previous = [r.recurring_run_id for r in (client.list_recurring_runs(
            experiment_id=experiment_id, page_size=100).recurring_runs or [])
            if r.display_name == job_name]
        created = client.create_recurring_run(
            experiment_id, job_name, cron_expression=cron, max_concurrency=1, no_catchup=True,
            params=params or {}, pipeline_id=pipeline_id, version_id=version_id)
        for old in previous:
            client.delete_recurring_run(old)
    except (ApiException, HTTPError, TimeoutError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or str(exc).strip().splitlines()[0]
        raise OblivioError(f"Kubeflow Pipelines at {host}: {reason}") from None
    return {"pipeline_id": pipeline_id, "version_id": version_id,
            "experiment_id": experiment_id, "recurring_run_id": created.recurring_run_id,
            "replaced": previous}


def _check_reachable(host: str) -> None:
    """One quick try first: kfp.Client retries an unreachable server for half a minute."""
    import requests

    try:
        requests.get(host.rstrip("/") + "/apis/v2beta1/healthz", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        raise OblivioError(f"Kubeflow Pipelines at {host} is unreachable "
                           f"({type(exc).__name__})") from None
