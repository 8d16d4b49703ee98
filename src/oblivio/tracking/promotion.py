"""Promotion through gates, and the deletion rule: a version may become ``champion`` only if it
has forgotten everything the current champion has forgotten, so neither promotion nor rollback
can bring deleted data back."""

from __future__ import annotations

from mlflow.exceptions import MlflowException

from oblivio.errors import OblivioError
from oblivio.evaluation.gates import Gates, check_gates, verdict
from oblivio.tracking.registry import (
    CHAMPION,
    TAG,
    client,
    forgotten,
    resolve_version,
    set_champion,
)


def deletion_conflicts(candidate_tags: dict[str, str], champion_tags: dict[str, str]) -> list[str]:
    """What the champion has forgotten that the candidate still knows."""
    classes_c, batches_c = forgotten(candidate_tags)
    classes_h, batches_h = forgotten(champion_tags)
    out = [f"class {c}" for c in sorted(classes_h - classes_c)]
    out += [f"deletion batch {b[:12]}" for b in sorted(batches_h - batches_c)]
    return out


def promote(name: str, version: str, gates: Gates | None = None) -> str:
    """Make ``version`` of ``name`` the champion if it passes the gates (unlearned versions)
    and honours every deletion the current champion honours. Returns a one-line summary."""
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
    from oblivio.ledger.retention import unhonoured
    from oblivio.ledger.store import Ledger

    champion = client().get_model_version_by_alias(name, CHAMPION)
    if not unhonoured(Ledger(), name, champion.tags):
        return None
    fallback = _newest_honouring(name)
    if fallback is None:
        raise OblivioError(f"no version of {name} honours every honoured request")
    set_champion(name, fallback, "restored: the champion missed an honoured request")
    return fallback


def _newest_honouring(name: str) -> str | None:
    from oblivio.ledger.retention import unhonoured
    from oblivio.ledger.store import Ledger
    from oblivio.tracking.registry import versions

    ledger = Ledger()
    for version in reversed(versions(name)):
        if not unhonoured(ledger, name, version.tags):
            return str(version.version)
    return None


def _refuse_unhonoured(name: str, target, verb: str) -> None:
    """Deletion-monotone against the ledger: every honoured request must be forgotten."""
    from oblivio.ledger.retention import unhonoured
    from oblivio.ledger.store import Ledger

    missing = unhonoured(Ledger(), name, target.tags)
    if missing:
        raise OblivioError(f"{verb}: version {target.version} still knows what honoured deletion "
                           f"request(s) {', '.join(missing[:5])} removed")
