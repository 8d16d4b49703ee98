"""Which training images a model has already forgotten.

A model records them by digest and count only: the ids are personal data that purge must be
able to erase, and every later model would otherwise copy them into its ``config.json``. The
ids are read back, when a continual request or an evaluation needs them, from where they are
kept: files the caller names (``--forgotten-ids``), else the ledger that honoured them. Either
way they must hash to the digest the model records, so a wrong or partial list is refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from oblivio.data.sample_ids import ids_sha256, read_sample_ids
from oblivio.errors import OblivioError

#: Files of ids the caller holds (``--forgotten-ids``), separated by ``os.pathsep``: in the
#: environment, so the steps of a local pipeline run, started as subprocesses, read them too.
GIVEN_ENV = "OBLIVIO_FORGOTTEN_IDS"


@contextmanager
def given_ids(files: Sequence[str | os.PathLike[str]] | None) -> Iterator[None]:
    """Within this block, a model's earlier deletions are read from ``files`` (their union)."""
    before = os.environ.get(GIVEN_ENV)
    if files:
        os.environ[GIVEN_ENV] = os.pathsep.join(
            os.fspath(f) if "://" in os.fspath(f) else str(Path(f).resolve()) for f in files)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(GIVEN_ENV, None)
        else:
            os.environ[GIVEN_ENV] = before


def recorded_ids(config: dict) -> tuple[str | None, int, list[dict]]:
    """The digest and count of every training image the model has forgotten, and its deletion
    steps (``sha256`` and ``count`` of each request's ids, in order)."""
    provenance = config.get("provenance", {})
    listed = provenance.get("forgotten_ids")  # a model from before digests: read, not copied
    if listed:
        digest = ids_sha256(listed)
        return digest, len(listed), [{"sha256": digest, "count": len(listed)}]
    return (provenance.get("forgotten_ids_sha256"), int(provenance.get("forgotten_ids_count", 0)),
            list(provenance.get("deletions", [])))


def provenance_after(config: dict, new_ids: Sequence[str], union: Sequence[str]) -> dict:
    """The keys a model records after forgetting ``new_ids`` on top of what ``config`` records
    (``union``: every id forgotten, earlier and now)."""
    _, _, steps = recorded_ids(config)
    if new_ids:
        steps = [*steps, {"sha256": ids_sha256(list(new_ids)), "count": len(new_ids)}]
    if not union:
        return {}
    return {"forgotten_ids_sha256": ids_sha256(list(union)), "forgotten_ids_count": len(union),
            "deletions": steps}


def carried(config: dict) -> dict:
    """What a model that forgets classes carries over of its parent's deleted images."""
    digest, count, steps = recorded_ids(config)
    return {"forgotten_ids_sha256": digest, "forgotten_ids_count": count,
            "deletions": steps} if count else {}


def forgotten_ids(config: dict, where: str, known: Sequence[str] = ()) -> list[str]:
    """The training ids the model at ``where`` has forgotten (sorted), checked against the
    digest it records. Each of its deletions is read from ``known`` (ids in hand, such as the
    request it just honoured), the given files, or the ledger; one error line when none holds
    them."""
    digest, count, steps = recorded_ids(config)
    if not count:
        return []
    listed = config.get("provenance", {}).get("forgotten_ids")
    if listed:
        return sorted(listed)
    given = [f for f in os.environ.get(GIVEN_ENV, "").split(os.pathsep) if f]
    pools = [sorted(set(known))] if known else []
    pools += [sorted(set(read_sample_ids(f).to_pylist())) for f in given]
    union = sorted(set().union(*pools))
    if ids_sha256(union) == digest:  # the union of every request, given together
        return union
    by_digest = {ids_sha256(p): p for p in pools}
    found = set()
    for step in steps:
        ids = by_digest.get(step["sha256"]) or _from_ledger(step["sha256"])
        if ids is None:
            found = None
            break
        found.update(ids)
    if found is None or ids_sha256(sorted(found)) != digest:
        if given:
            raise OblivioError(
                f"--forgotten-ids ({len(union)} ids) is not what {where} has forgotten: it "
                f"records {count} ids with SHA-256 {digest[:12]}; give every request it "
                "honoured")
        raise OblivioError(
            f"{where} has forgotten {count} training images, recorded by digest "
            f"({digest[:12]}) only: their ids are in the ledger that honoured them (set "
            "OBLIVIO_LEDGER_URL) or give them with --forgotten-ids")
    return sorted(found)


def refuse_again(new_ids: Sequence[str], done: Sequence[str], where: str) -> None:
    """One error line when a request names ids the model at ``where`` has already forgotten."""
    again = sorted(set(new_ids) & set(done))
    if again:
        raise OblivioError(f"{len(again)} sample id(s) are already forgotten by {where} "
                           f"(e.g. {again[0]}); request only new ones")


def _from_ledger(sha256: str) -> list[str] | None:
    """One deletion's ids as the ledger holds them; None when it does not (or no ledger is
    configured: opening one would create an empty ledger)."""
    from oblivio.ledger.store import LEDGER_ENV, Ledger, ledger_url  # SQLAlchemy: only here

    url = ledger_url()
    if LEDGER_ENV not in os.environ and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    return Ledger(url).ids_with_sha256(sha256)


def classes_after(where: str, new: list[int], already: list[int] | set[int],
                  names: list[str]) -> list[int]:
    """Every class forgotten once ``new`` is: none of ``new`` forgotten before (that request
    would do nothing), and at least one class left to keep."""
    again = sorted(set(new) & set(already))
    if again:
        raise OblivioError(f"{where} has already forgotten class(es) "
                           f"{', '.join(f'{c} ({names[c]})' for c in again)}")
    forget_all = sorted(set(new) | set(already))
    if len(forget_all) >= len(names):
        raise OblivioError("cannot forget every class: nothing would be left to keep")
    return forget_all
