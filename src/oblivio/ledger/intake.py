"""Intake: a deletion request is checked against the champion and the dataset before the ledger
records it, so a batch never starts on a request that cannot be honoured."""

from __future__ import annotations

import hashlib
from datetime import date

from oblivio.data import open_dataset
from oblivio.data.sample_ids import ids_sha256, read_sample_ids
from oblivio.errors import OblivioError
from oblivio.ledger.store import Ledger, Request


def classes_sha256(classes: list[int]) -> str:
    return hashlib.sha256("".join(f"{c}\n" for c in sorted(classes)).encode()).hexdigest()


def submit_request(ledger: Ledger, model_name: str, data: str, ids_uri: str | None = None,
                   classes: str | None = None, ticket: str | None = None,
                   deadline: date | None = None) -> Request:
    """Check one request (training ids of the dataset, named once each; or classes the dataset
    has and the champion still knows, leaving one to keep) and record it as pending."""
    from oblivio.tracking.registry import CHAMPION, forgotten, resolve_version
    from oblivio.tracking.store import connect
    from oblivio.unlearn.class_plan import classes_after
    from oblivio.unlearn.requests import train_rows_of

    if (ids_uri is None) == (classes is None):
        raise OblivioError("a request names sample ids (--ids) or classes (--classes), one of them")
    if deadline is not None and deadline < date.today():
        raise OblivioError(f"deadline {deadline.isoformat()} is in the past")
    connect()
    champion = resolve_version(f"models:/{model_name}@{CHAMPION}")
    dataset = open_dataset(data)
    if ids_uri is not None:
        ids = read_sample_ids(ids_uri)
        train_rows_of(dataset, dataset.split("train"), ids, ids_uri)
        return ledger.submit(model_name, "ids", ids.to_pylist(), ids_sha256(ids), ticket,
                             deadline)
    new = dataset.class_indices(classes)
    already, _ = forgotten(champion.tags)
    classes_after(f"{model_name}@{CHAMPION} (version {champion.version})", new, already,
                  dataset.classes)
    queued = {int(c) for r in ledger.find(model_name=model_name)
              if r.kind == "classes" and r.state in ("pending", "claimed")
              for c in ledger.items_of(r.id)}
    if len(set(new) | already | queued) >= len(dataset.classes):
        raise OblivioError("with the classes already pending, nothing would be left to keep: "
                           "nothing recorded")
    return ledger.submit(model_name, "classes", [str(c) for c in new], classes_sha256(new),
                         ticket, deadline)
