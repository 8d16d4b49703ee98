"""Where MLflow lives: ``MLFLOW_TRACKING_URI`` when set, else a SQLite file and an artifact
folder under the oblivio home (``OBLIVIO_HOME``, default ``~/.oblivio``). Nothing is contacted
before :func:`connect` has checked that the server answers, so an unreachable MLflow costs one
clear error instead of minutes of retries."""

from __future__ import annotations

import os
from pathlib import Path

from oblivio.errors import OblivioError
from oblivio.home import oblivio_home

EXPERIMENT = "oblivio"


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


def _check_sqlite(path: Path, create: bool) -> None:
    """A SQLite store is a database, one this process can write unless it only reads (MLflow
    retries a write to a read-only one for minutes), or, when ``create``, a new file where one
    can be made; one line otherwise. A read-only copy serves queries (an auditor's snapshot)."""
    import sqlite3

    if not path.exists():
        if not create:
            raise OblivioError(f"no MLflow store at {path}: nothing was registered here yet")
        existing = next(p for p in path.parents if p.exists())
        if not os.access(existing, os.W_OK):
            raise OblivioError(f"cannot create the MLflow store {path}: {existing} is read-only")
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise OblivioError(f"MLflow store {path} is unusable ({exc})") from None
    if create and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        raise OblivioError(f"MLflow store {path} is read-only: oblivio records every run there")


def connect(experiment: str = EXPERIMENT, create: bool = True) -> str:
    """Point mlflow at the store, create the experiment if needed, return its id. ``create``
    False, for queries: a store or experiment that does not exist yet is an error, not a new
    empty one (a query has nothing to find there), and a read-only store is fine."""
    import logging

    import mlflow

    # "Creating initial MLflow database tables..." and alembic's lines are no news to a user
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        _check_http(uri)
    elif uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        _check_sqlite(path, create)
        path.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    if not create:
        raise OblivioError(f"no experiment {experiment!r} in the MLflow store {uri}: nothing "
                           "was recorded here yet")
    location = None
    if uri.startswith("sqlite:///"):  # artifacts beside the database, not under the cwd
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return mlflow.create_experiment(experiment, artifact_location=location)
