"""Intake: a deletion request is checked against the champion and the dataset, then recorded in
one ledger transaction with the rest of its checks, so a batch never starts on a request that
cannot be honoured. The request's digest is computed here, from what it names."""

from __future__ import annotations

from datetime import date

from oblivio.data import open_dataset
from oblivio.data.sample_ids import read_sample_ids, train_rows_of
from oblivio.errors import OblivioError
from oblivio.ledger.store import Ledger, Request
from oblivio.models.forgotten import classes_after
from oblivio.tracking.registry import (
    CHAMPION,
    forgotten,
    model_exists,
    resolve_version,
    version_evidence,
)
from oblivio.tracking.store import connect


def submit_request(ledger: Ledger, model_name: str, data: str, ids_uri: str | None = None,
                   classes: str | None = None, ticket: str | None = None,
                   deadline: date | None = None) -> tuple[Request, bool]:
    """Check one request (training ids of the dataset, named once each; or classes the dataset
    has, leaving one to keep) and record it as pending; a class request the champion already
    meets is honoured at once by it. The same request again returns the one recorded. Returns
    (request, whether it is new)."""
    if (ids_uri is None) == (classes is None):
        raise OblivioError("a request names sample ids (--ids) or classes (--classes), one of them")
    if deadline is not None and deadline < date.today():
        raise OblivioError(f"deadline {deadline.isoformat()} is in the past")
    connect()
    if not model_exists(model_name):  # an unknown model is one line, never one to train
        raise OblivioError(f"no registered model {model_name!r} in MLflow: a request names a "
                           "model that exists (check --model-name)")
    champion = resolve_version(f"models:/{model_name}@{CHAMPION}")
    dataset = open_dataset(data)
    if ids_uri is not None:
        ids = read_sample_ids(ids_uri)
        train_rows_of(dataset, dataset.split("train"), ids, ids_uri)
        return ledger.submit(model_name, "ids", ids.to_pylist(), ticket, deadline)
    new = dataset.class_indices(classes)
    already, _ = forgotten(champion.tags)
    met_by = str(champion.version) if set(new) <= already else None
    if met_by is None:
        classes_after(f"{model_name}@{CHAMPION} (version {champion.version})", new, already,
                      dataset.classes)
    return ledger.submit(model_name, "classes", [str(c) for c in new], ticket, deadline,
                         total_classes=len(dataset.classes),
                         forgotten_classes=frozenset(already), met_by=met_by,
                         met_evidence=version_evidence(champion))

