"""Promotion through gates, under the deletion rule: a version may become ``champion`` only if it
has forgotten everything the current champion has forgotten and every honoured request, so
neither promotion nor rollback can bring deleted data back. Every move of ``champion`` is
recorded in the ledger's history, so that a move made anywhere else (the MLflow UI) is told
apart by ``oblivio audit verify``."""

from __future__ import annotations

import os

from oblivio.deletion.rule import deletion_conflicts, unhonoured
from oblivio.errors import OblivioError
from oblivio.evaluation.gates import Gates, check_gates, verdict
from oblivio.ledger.store import Ledger
from oblivio.tracking.registry import (
    CHAMPION,
    TAG,
    Lineage,
    client,
    log_model_version,
    resolve_version,
    version_evidence,
    versions,
)


def promote(name: str, version: str, gates: Gates | None = None) -> str:
    """Make ``version`` of ``name`` the champion if it passes the gates (unlearned versions)
    and honours every deletion the current champion honours. Returns a one-line summary."""
    from mlflow.exceptions import MlflowException  # mlflow loads slowly: only when promoting

    gates = gates or Gates()
    target = resolve_version(f"models:/{name}/{version}")
    try:
        champion = client().get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no champion yet: nothing to honour
        champion = None
    if champion is not None and champion.version == target.version:
        _refuse_unhonoured(name, target, f"{CHAMPION} now, but")  # the rule holds here too
        return f"{name} version {version} is already {CHAMPION}"
    if champion is not None:
        conflicts = deletion_conflicts(target.tags, champion.tags)
        if conflicts:
            raise OblivioError(
                f"refused: version {version} still knows what {CHAMPION} version "
                f"{champion.version} has forgotten ({', '.join(conflicts)})")
    if target.tags.get(f"{TAG}method", "trained") != "trained":
        metrics = client().get_run(target.run_id).data.metrics if target.run_id else {}
        failures = check_gates(metrics, gates)
        if failures:
            raise OblivioError(f"refused: version {version} fails the gates ({verdict(failures)})")
    _refuse_unhonoured(name, target, "refused")
    set_champion(name, str(target.version), "promoted")
    # checked again once the alias is set: another promotion and a batch may have honoured a
    # request in between; the champion then goes to the newest version honouring everything
    try:
        _refuse_unhonoured(name, target, "reverted")
    except OblivioError:
        fallback = _newest_honouring(name)
        if fallback is not None:
            set_champion(name, fallback, "reverted: a request was honoured meanwhile")
        raise
    before = f" (was version {champion.version})" if champion is not None else ""
    return f"{name} version {version} is now {CHAMPION}{before}"


def restore_honouring_champion(name: str) -> str | None:
    """After a request was honoured: if a promotion moved the champion, since that request's
    version was checked, to one that does not honour it, the champion goes to the newest
    version that honours everything. Returns the version it went to (None: nothing to do)."""
    champion = client().get_model_version_by_alias(name, CHAMPION)
    if not unhonoured(Ledger(), name, champion.tags):
        return None
    fallback = _newest_honouring(name)
    if fallback is None:
        raise OblivioError(f"no version of {name} honours every honoured request")
    set_champion(name, fallback, "restored: the champion missed an honoured request")
    return fallback


def _newest_honouring(name: str) -> str | None:
    ledger = Ledger()
    for version in reversed(versions(name)):
        if not unhonoured(ledger, name, version.tags):
            return str(version.version)
    return None


def _refuse_unhonoured(name: str, target, verb: str) -> None:
    """Deletion-monotone against the ledger: every honoured request must be forgotten."""
    missing = unhonoured(Ledger(), name, target.tags)
    if missing:
        raise OblivioError(f"{verb}: version {target.version} still knows what honoured deletion "
                           f"request(s) {', '.join(missing[:5])} removed")


def set_champion(name: str, version: str, why: str) -> None:
    """Point ``champion`` at ``version`` and record the move in the ledger's history, so that
    a move made anywhere else (the MLflow UI) is told apart by ``oblivio audit verify``."""
    from mlflow.exceptions import MlflowException  # as above

    try:
        previous = str(client().get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:  # no champion yet
        previous = None
    client().set_registered_model_alias(name, CHAMPION, version)
    target = client().get_model_version(name, version)
    Ledger().record(name, "champion", version=str(version), previous=previous, why=why,
                    **version_evidence(target))


def register_champion(model_dir: str | os.PathLike[str], name: str, lineage: Lineage):
    """Register a model version (an original, trained here) straight as ``champion``, the move
    recorded. Returns the version."""
    version = log_model_version(model_dir, name, lineage)
    set_champion(name, str(version.version), "registered as champion")
    return version
