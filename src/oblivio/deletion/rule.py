"""The deletion rule: which model versions honour which deletion requests. A version honours a
class request once it has forgotten each of its classes, and an image request once it has
forgotten the batch of images the request was honoured in (its lineage tags say what it has
forgotten; the ledger says what was honoured). Promotion, audit, verify and purge all ask this."""

from __future__ import annotations

from oblivio.ledger.store import Ledger
from oblivio.tracking.registry import forgotten


def unhonoured(ledger: Ledger, model_name: str, tags: dict[str, str]) -> list[str]:
    """The honoured requests of ``model_name`` that a version with these lineage tags has not
    forgotten (a class request: each of its classes; an image request: the batch of images it
    was honoured in)."""
    classes, batches = forgotten(tags)
    missing = []
    digests: dict[str, str | None] = {}
    for request in ledger.find(state="honoured", model_name=model_name):
        if request.kind == "classes":
            if not {int(c) for c in ledger.items_of(request.id)} <= classes:
                missing.append(request.id)
            continue
        if request.batch_id not in digests:
            digests[request.batch_id] = ledger.batch_row(request.batch_id)["ids_sha256"]
        if digests[request.batch_id] not in batches:
            missing.append(request.id)
    return missing


def deletion_conflicts(candidate_tags: dict[str, str], champion_tags: dict[str, str]) -> list[str]:
    """What the champion has forgotten that the candidate still knows."""
    classes_c, batches_c = forgotten(candidate_tags)
    classes_h, batches_h = forgotten(champion_tags)
    out = [f"class {c}" for c in sorted(classes_h - classes_c)]
    out += [f"deletion batch {b[:12]}" for b in sorted(batches_h - batches_c)]
    return out
