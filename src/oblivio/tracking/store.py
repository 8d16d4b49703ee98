"""Where MLflow lives: ``MLFLOW_TRACKING_URI`` when set, else a SQLite file and an artifact
folder under the oblivio home (``OBLIVIO_HOME``, default ``~/.oblivio``). Nothing is contacted
before :func:`connect` has checked that the server answers, so an unreachable MLflow costs one
clear error instead of minutes of retries."""

from __future__ import annotations

import os
from pathlib import Path

from oblivio.errors import OblivioError

EXPERIMENT = "oblivio"


def oblivio_home() -> Path:
    return Path(os.environ.get("OBLIVIO_HOME") or Path.home() / ".oblivio").expanduser()


def tracking_uri() -> str:
    """The tracking (and registry) URI in effect."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{oblivio_home() / 'mlflow.db'}"


def _check_http(uri: str) -> None:
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        raise OblivioError(f"MLflow at {uri} is unreachable ({type(exc).__name__})") from None


def connect(experiment: str = EXPERIMENT) -> str:
    """Point mlflow at the store, create the experiment if needed, return its id."""
    import mlflow

    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        _check_http(uri)
    elif uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # artifacts beside the database, not under the cwd
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return mlflow.create_experiment(experiment, artifact_location=location)
