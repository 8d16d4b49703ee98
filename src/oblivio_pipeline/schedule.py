"""``oblivio pipeline schedule`` and ``unschedule``: put the deletion-batch pipeline on a
Kubeflow Pipelines schedule, or take it off. Scheduling uploads the compiled pipeline (a new
version of it when it exists) and replaces the recurring run of the same name with one on that
version: at most one run at a time and no catch-up, since a batch claims everything pending and
a backlog of runs would claim nothing.

Replacing never kills a batch in flight. Deleting a recurring run (a ScheduledWorkflow)
garbage-collects its running Workflow, whose claim would then wait out its lease; so the old
recurring run is disabled first, its run is waited for (bounded), and only then deleted. One
still running when the wait ends stays disabled, and a later call deletes it.

Multi-user Kubeflow authenticates every call: the token comes from ``--token-file`` (the
projected ServiceAccount token, audience ``pipelines.kubeflow.org``, which the kubelet renews;
kfp reads it again on each call), ``KF_PIPELINES_SA_TOKEN_PATH``, or a bearer token. The
pipeline is uploaded into the profile namespace, so two teams' pipelines never collide."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from oblivio.errors import OblivioError

PIPELINE = "oblivio-deletion-batch"
#: Kubeflow's cron has six fields, seconds first (robfig/cron)
CRON = re.compile(r"^\s*(\S+\s+){5}\S+\s*$")
#: Where Kubeflow's PodDefault and the chart mount the projected ServiceAccount token
DEFAULT_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
#: Run states of a run still holding (or about to hold) a batch's claim
ACTIVE = frozenset({"PENDING", "RUNNING", "CANCELING", "PAUSED", "RUNTIME_STATE_UNSPECIFIED"})
PAGE = 100


@dataclass(frozen=True)
class Target:
    """Where and as whom: the API, the profile namespace (None: single-user Kubeflow), and
    the credentials."""

    host: str
    namespace: str | None = None
    token: str | None = None
    token_file: Path | None = None


def connect(target: Target):
    """A ``kfp.Client`` carrying the credentials: a bearer token, or a token file read on every
    call (a projected token is renewed by the kubelet)."""
    import kfp
    from kfp.client import ServiceAccountTokenVolumeCredentials

    path = target.token_file or os.environ.get("KF_PIPELINES_SA_TOKEN_PATH") or (
        DEFAULT_TOKEN_PATH if Path(DEFAULT_TOKEN_PATH).is_file() else None)
    credentials = None
    if target.token is None and path is not None:
        if not Path(path).is_file():
            raise OblivioError(f"token file {path} does not exist (mount the projected "
                               "ServiceAccount token, audience pipelines.kubeflow.org)")
        credentials = ServiceAccountTokenVolumeCredentials(str(path))
    _check_reachable(target.host)
    return kfp.Client(host=target.host, namespace=target.namespace or "kubeflow",
                      existing_token=target.token, credentials=credentials)


def _pages(call: Callable, field: str, **kwargs) -> Iterator:
    """Every item of a paginated list call, page by page."""
    token = ""
    while True:
        page = call(page_token=token, page_size=PAGE, **kwargs)
        yield from getattr(page, field) or []
        token = page.next_page_token
        if not token:
            return


def _by_name(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name",
                                       "string_value": name}]})


@contextlib.contextmanager
def _kubeflow_errors(host: str) -> Iterator[None]:
    """Any refusal of the API as one line, with a hint where the token is the cause."""
    from kfp_server_api.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except (ApiException, HTTPError, TimeoutError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or str(exc).strip().splitlines()[0]
        try:  # the API says why in its body: {"error": ..., "message": ...}
            said = json.loads(getattr(exc, "body", None) or "{}")
        except (TypeError, ValueError):
            said = {}
        detail = (said.get("message") or said.get("error")) if isinstance(said, dict) else ""
        reason = f"{reason}: {str(detail).splitlines()[0][:300]}" if detail else reason
        status = getattr(exc, "status", None)
        hint = (" (no token, or a rejected one: pass --token-file or --token)"
                if status in (401, 403) else "")
        raise OblivioError(f"Kubeflow Pipelines at {host}: "
                           f"{f'{status} ' if status else ''}{reason}{hint}") from None


def schedule(target: Target, cron: str, experiment: str = "oblivio",
             job_name: str = PIPELINE, params: dict | None = None, package: Path | None = None,
             pipeline_name: str = PIPELINE, wait_s: float = 1800, poll_s: float = 10,
             image: str | None = None, control_image: str | None = None) -> dict:
    """Upload and schedule; returns the ids Kubeflow gave (pipeline, version, experiment,
    recurring run), the recurring runs it replaced, and those left disabled because their run
    was still going when ``wait_s`` ran out. ``image`` and ``control_image`` point the steps at
    other images (the Helm chart's, by digest when it pins them)."""
    if not CRON.match(cron):
        raise OblivioError(f"--cron {cron!r}: Kubeflow takes six fields, seconds first "
                           "(e.g. '0 0 2 * * *': every day at 02:00)")
    if package is None:
        from oblivio_pipeline.pipelines import oblivio_deletion_batch

        package = Path(oblivio_deletion_batch.__file__).parent / "pipeline.yaml"
    with tempfile.TemporaryDirectory() as folder:
        if image is not None or control_image is not None:
            from oblivio_pipeline.compile import retarget

            text = retarget(package.read_text(), image, control_image)
            package = Path(folder) / "pipeline.yaml"
            package.write_text(text)
        return _schedule(target, cron, experiment, job_name, params or {}, package,
                         pipeline_name, wait_s, poll_s)


def _schedule(target: Target, cron: str, experiment: str, job_name: str, params: dict,
              package: Path, pipeline_name: str, wait_s: float, poll_s: float) -> dict:
    client = connect(target)
    with _kubeflow_errors(target.host):
        found = list(_pages(client.list_pipelines, "pipelines", filter=_by_name(pipeline_name),
                            namespace=target.namespace))
        if found:
            pipeline_id = found[0].pipeline_id
        else:
            pipeline_id = client.upload_pipeline(str(package), pipeline_name,
                                                 namespace=target.namespace).pipeline_id
        version_id = client.upload_pipeline_version(
            str(package), f"{pipeline_name}-{time.strftime('%Y%m%d-%H%M%S')}",
            pipeline_id=pipeline_id).pipeline_version_id
        experiment_id = client.create_experiment(experiment,
                                                 namespace=target.namespace).experiment_id
        previous = _named(client, experiment_id, job_name, target.namespace)
        ended, running = _retire(client, experiment_id, previous, wait_s, poll_s,
                                 target.namespace)
        try:
            created = client.create_recurring_run(
                experiment_id, job_name, cron_expression=cron, max_concurrency=1,
                no_catchup=True, params=params, pipeline_id=pipeline_id,
                version_id=version_id)
        except Exception:
            for old in ended + running:  # no new schedule: the old one goes on
                client.enable_recurring_run(old)
            raise
        for old in ended:
            client.delete_recurring_run(old)
    return {"pipeline_id": pipeline_id, "version_id": version_id,
            "experiment_id": experiment_id, "recurring_run_id": created.recurring_run_id,
            "replaced": ended, "left_disabled": running}


def unschedule(target: Target, experiment: str = "oblivio", job_name: str = PIPELINE,
               wait_s: float = 1800, poll_s: float = 10) -> dict:
    """Take the schedule off (chart uninstall): disable, wait for a run in flight, delete."""
    client = connect(target)
    with _kubeflow_errors(target.host):
        experiment_id = _experiment_id(client, experiment, target.namespace)
        if experiment_id is None:
            return {"deleted": [], "left_disabled": []}
        previous = _named(client, experiment_id, job_name, target.namespace)
        ended, running = _retire(client, experiment_id, previous, wait_s, poll_s,
                                 target.namespace)
        for old in ended:
            client.delete_recurring_run(old)
    return {"deleted": ended, "left_disabled": running}


def check(target: Target, mlflow_url: str | None = None) -> dict:
    """What ``helm test`` runs: Kubeflow Pipelines accepts the token in the namespace (it lists
    the experiments there), and MLflow, when given, answers its API on that URL (a Host header
    it does not allow gets 403)."""
    import requests

    client = connect(target)
    with _kubeflow_errors(target.host):
        listed = client.list_experiments(page_size=1, namespace=target.namespace)
    result = {"kubeflow": target.host, "experiments": listed.total_size or 0}
    if mlflow_url:
        url = f"{mlflow_url.rstrip('/')}/api/2.0/mlflow/experiments/search"
        try:
            answer = requests.get(url, params={"max_results": 1}, timeout=10)
        except requests.RequestException as exc:
            raise OblivioError(f"MLflow at {mlflow_url} is unreachable "
                               f"({type(exc).__name__})") from None
        if answer.status_code != 200:
            first = (answer.text.strip().splitlines() or [""])[0][:200]
            raise OblivioError(f"MLflow at {mlflow_url}: {answer.status_code} {first}")
        result["mlflow"] = mlflow_url
    return result


def _experiment_id(client, name: str, namespace: str | None) -> str | None:
    found = list(_pages(client.list_experiments, "experiments", filter=_by_name(name),
                        namespace=namespace))
    return found[0].experiment_id if found else None


def _named(client, experiment_id: str, job_name: str, namespace: str | None) -> list[str]:
    return [r.recurring_run_id for r in _pages(
        client.list_recurring_runs, "recurring_runs", experiment_id=experiment_id,
        namespace=namespace) if r.display_name == job_name]


def _retire(client, experiment_id: str, recurring: list[str], wait_s: float, poll_s: float,
            namespace: str | None) -> tuple[list[str], list[str]]:
    """Disable each recurring run, then wait until none of its runs is active. Returns those
    whose runs ended and those still running when the wait ran out."""
    if not recurring:  # a first install: no runs to list
        return [], []
    for old in recurring:
        client.disable_recurring_run(old)
    deadline = time.monotonic() + wait_s
    while True:
        busy = {r.recurring_run_id for r in _pages(
            client.list_runs, "runs", experiment_id=experiment_id, namespace=namespace)
            if r.recurring_run_id in recurring and (r.state or "PENDING") in ACTIVE}
        if not busy or time.monotonic() >= deadline:
            return [r for r in recurring if r not in busy], [r for r in recurring if r in busy]
        time.sleep(poll_s)


def _check_reachable(host: str) -> None:
    """One quick try first: kfp.Client retries an unreachable server for half a minute."""
    import requests

    try:  # any answer will do: behind an auth proxy even healthz may ask for a token
        requests.get(host.rstrip("/") + "/apis/v2beta1/healthz", timeout=5)
    except requests.RequestException as exc:
        raise OblivioError(f"Kubeflow Pipelines at {host} is unreachable "
                           f"({type(exc).__name__})") from None
