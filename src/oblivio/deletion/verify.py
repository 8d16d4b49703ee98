"""``oblivio audit verify``: is the deletion record intact, and does the registry agree with it?

- the history's hash chain holds (no event edited, removed or inserted);
- every request's row is what its events say (an SQL ``UPDATE`` of who honoured it, or when,
  or a row inserted by hand, shows);
- the model's ``champion`` is the version of the last move oblivio recorded (a move in the
  MLflow UI shows), it honours every honoured request, and its weights are the ones recorded
  (the SHA-256 of the file in the registry, not only its tag);
- every version the history names still has the lineage tags it had then (an edit of its
  ``oblivio.forgotten_*`` tags shows).

Each break is one line naming it; none is the only passing answer."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field

from oblivio.deletion.rule import unhonoured
from oblivio.errors import OblivioError
from oblivio.ledger import history
from oblivio.ledger.store import Ledger, Request
from oblivio.tracking.registry import CHAMPION, TAG, client, lineage_sha256
from oblivio.tracking.store import connect

#: ``oblivio.models.checkpoint.WEIGHTS_FILE``, named here so that the check runs without torch
WEIGHTS_FILE = "model.safetensors"
#: the request state each event leaves behind
AFTER = {"submitted": "pending", "claimed": "claimed", "honoured": "honoured",
         "returned": "pending", "failed": "failed"}


@dataclass
class Verdict:
    breaks: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks


def verify(ledger: Ledger, model_name: str, weights: bool = True) -> Verdict:
    """Check the history and ``model_name``'s registry entries against it."""
    rows = ledger.events()
    verdict = Verdict(history.breaks(rows))
    verdict.facts.append(f"{len(rows)} events, hash chain "
                         + ("intact" if not verdict.breaks else "BROKEN"))
    requests = ledger.find(model_name=model_name)
    verdict.breaks += _replay(requests, rows)
    verdict.facts.append(f"{len(requests)} requests of {model_name} match their history")
    verdict.breaks += _registry(ledger, model_name, [e for e in rows
                                                      if e.model_name == model_name],
                                weights, verdict.facts)
    return verdict


def _replay(requests: list[Request], rows) -> list[str]:
    found = []
    by_request: dict[str, list] = {}
    for e in rows:
        if e.request_id:
            by_request.setdefault(e.request_id, []).append(e)
    for r in requests:
        events = by_request.get(r.id, [])
        if not events or events[0].event != "submitted":
            found.append(f"request {r.id} has no submission in the history (written outside "
                         "oblivio)")
            continue
        submitted = json.loads(events[0].detail)
        if (submitted["kind"], submitted["count"], submitted["sha256"], submitted["ticket"]) != (
                r.kind, r.count, r.sha256, r.ticket):
            found.append(f"request {r.id}: its kind, count, digest or ticket differ from its "
                         f"submission (event {events[0].seq})")
        last = [e for e in events if e.event in AFTER][-1]
        if AFTER[last.event] != r.state:
            found.append(f"request {r.id} is {r.state} in the ledger, but {AFTER[last.event]} "
                         f"in its history (event {last.seq})")
            continue
        if r.state == "honoured":
            detail = json.loads(last.detail)
            if (detail["version"], history.aware(last.at)) != (r.version, r.honoured_at):
                found.append(f"request {r.id} says honoured by version {r.version} at "
                             f"{r.honoured_at:%Y-%m-%d %H:%M:%S}; its history says version "
                             f"{detail['version']} at {history.aware(last.at):%Y-%m-%d %H:%M:%S} "
                             f"(event {last.seq})")
    return found


def _registry(ledger: Ledger, model_name: str, rows, weights: bool,
              facts: list[str]) -> list[str]:
    from mlflow.exceptions import MlflowException

    connect()
    try:
        champion = client().get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException as exc:
        raise OblivioError(f"{model_name}@{CHAMPION}: {exc.message.splitlines()[0]}") from None
    number = str(champion.version)
    found = []
    moves = [e for e in rows if e.event in ("champion", "honoured")]
    if moves:
        last = moves[-1]
        expected = json.loads(last.detail)["version"]
        if expected != number:
            found.append(f"{CHAMPION} of {model_name} is version {number}, but the last move "
                         f"oblivio recorded is to version {expected} (event {last.seq}): it was "
                         "moved outside oblivio")
    missing = unhonoured(ledger, model_name, champion.tags)
    if missing:
        found.append(f"{CHAMPION} version {number} does not honour {', '.join(missing[:5])}"
                     + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    recorded: dict[str, tuple[int, dict]] = {}
    for e in rows:
        detail = json.loads(e.detail)
        if detail.get("lineage_sha256"):
            recorded[detail["version"]] = (e.seq, detail)
    for version, (seq, detail) in sorted(recorded.items()):
        try:
            tags = client().get_model_version(model_name, version).tags
        except MlflowException:
            found.append(f"version {version} of {model_name}, named by event {seq}, is gone "
                         "from the registry")
            continue
        if lineage_sha256(tags) != detail["lineage_sha256"]:
            found.append(f"version {version}'s lineage tags were changed after event {seq} "
                         "recorded them")
    tag = champion.tags.get(f"{TAG}weights_sha256")
    if number in recorded and recorded[number][1].get("weights_sha256") != tag:
        found.append(f"version {number}'s weights tag differs from event "
                     f"{recorded[number][0]}")
    if weights and tag:
        actual = _weights_sha256(model_name, number)
        if actual != tag:
            found.append(f"{CHAMPION} version {number}'s weights in the registry hash to "
                         f"{actual[:12]}, not the recorded {tag[:12]}")
        else:
            facts.append(f"{CHAMPION} version {number}: weights sha256 {actual[:12]} as recorded")
    if not missing:
        honoured = sum(r.state == "honoured" for r in ledger.find(model_name=model_name))
        facts.append(f"{CHAMPION} version {number} honours all {honoured} honoured requests")
    return found


def _weights_sha256(model_name: str, version: str) -> str:
    """SHA-256 of the version's weights file as the registry serves it (downloaded to a
    temporary directory that is removed)."""
    import hashlib

    import mlflow

    with tempfile.TemporaryDirectory(prefix="oblivio-verify-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{model_name}/{version}/extra_files/{WEIGHTS_FILE}",
            dst_path=tmp)
        digest = hashlib.sha256()
        with open(local, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()


def push_metric(gateway: str, model_name: str, verdict: Verdict) -> None:
    """Push ``oblivio_audit_verify_breaks`` (and the time of the check) to a Prometheus
    Pushgateway, for an alert on breaks > 0 or on a check that stopped running."""
    import time

    import requests

    body = ("# TYPE oblivio_audit_verify_breaks gauge\n"
            f"oblivio_audit_verify_breaks {len(verdict.breaks)}\n"
            "# TYPE oblivio_audit_verify_last_run_seconds gauge\n"
            f"oblivio_audit_verify_last_run_seconds {time.time():.0f}\n")
    url = f"{gateway.rstrip('/')}/metrics/job/oblivio-audit-verify/model/{model_name}"
    try:
        requests.put(url, data=body.encode(), timeout=30).raise_for_status()
    except requests.RequestException as exc:
        raise OblivioError(f"pushgateway at {gateway}: {type(exc).__name__}") from None
