"""``oblivio demo`` (what ``make demo`` runs): the product's story on this machine. Two deletion
requests go into the ledger, the next class the champion still knows and a seeded draw of
training images, and one deletion batch honours both with the pipeline (classes first, then the
images from the champion the classes left). It ends with which version honours each request,
the lineage and the audit, then a drill: ``oblivio audit verify`` passes, catches a champion
moved by hand through MLflow, and passes again once ``oblivio promote`` put it right.

The draw is seeded and excludes what the champion has already forgotten, so the same seed on a
fresh home gives the same requests and the same result, and each further run asks for new
images. On a fresh home the original is trained with the same seed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oblivio.errors import OblivioError


@dataclass
class DemoResult:
    batch: str
    requests: dict[str, str]  # kind -> request id
    honoured: dict[str, str]  # kind -> version
    tickets: dict[str, str]  # kind -> ticket
    named: dict[str, str]  # kind -> what the request names, for people


def draw_ids(name: str, data: str, count: int, seed: int) -> list[str]:
    """``count`` training ids the champion has not forgotten, drawn with ``seed`` and the number
    it has forgotten: the same home and seed give the same draw, a longer lineage a new one."""
    from oblivio.data import open_dataset
    from oblivio.models.forgotten import forgotten_ids
    from oblivio.tracking.registry import CHAMPION, version_config

    champion = f"models:/{name}@{CHAMPION}"
    done = forgotten_ids(version_config(champion), champion)
    train = open_dataset(data).split("train").sample_ids.to_numpy(zero_copy_only=False)
    left = np.setdiff1d(train, np.asarray(done, dtype=train.dtype))
    if len(left) < count:
        raise OblivioError(f"only {len(left)} training images are left to request")
    rng = np.random.default_rng([seed, len(done)])
    return sorted(rng.choice(left, count, replace=False).tolist())


def run_demo(name: str, data: str, seed: int = 0, images: int = 32, classes: str = "next",
             **params) -> DemoResult:
    """Submit a class request and ``images`` seeded training ids, honour both in one batch.
    Raises when either request is not honoured (its reason is the batch's)."""
    from oblivio.deletion.intake import submit_request
    from oblivio.ledger.store import Ledger
    from oblivio.tracking.registry import versions
    from oblivio_pipeline.batch import run_batch
    from oblivio_pipeline.local import next_class

    ledger = Ledger()
    step = len(versions(name))
    tickets = {"classes": f"demo-{seed}-{step}-class", "ids": f"demo-{seed}-{step}-images"}
    chosen = next_class(name) if classes == "next" else classes
    with tempfile.TemporaryDirectory() as tmp:
        ids_file = Path(tmp) / "ids.txt"
        ids_file.write_text("\n".join(draw_ids(name, data, images, seed)) + "\n")
        requests = {
            "classes": submit_request(ledger, name, data, classes=chosen,
                                      ticket=tickets["classes"])[0].id,
            "ids": submit_request(ledger, name, data, ids_uri=str(ids_file),
                                  ticket=tickets["ids"])[0].id}
    result = run_batch(name, data, ledger=ledger, **params)
    if result.batch is None:
        raise OblivioError("the demo's requests were not claimed: another batch holds them")
    states = {kind: ledger.get(rid) for kind, rid in requests.items()}
    missed = [f"{kind} request {r.id} is {r.state} ({r.last_error or 'no reason recorded'})"
              for kind, r in states.items() if r.state != "honoured"]
    if missed:
        raise OblivioError("not honoured: " + "; ".join(missed))
    return DemoResult(result.batch, requests, {k: r.version for k, r in states.items()}, tickets,
                      {"classes": f"class {chosen}", "ids": f"{images} training images"})


def tamper_drill(name: str) -> list[str]:
    """The record checked, then broken as a careless operator would break it, then put right:
    ``oblivio audit verify`` passes; ``champion`` is moved back to version 1 straight through
    MLflow (as its UI does), and verify must name the break; ``oblivio promote`` puts the
    honouring version back, and verify passes again. Returns what happened, for people; raises
    when a check does not answer as it must."""
    from oblivio.deletion.promotion import promote
    from oblivio.deletion.verify import verify
    from oblivio.ledger.store import Ledger
    from oblivio.tracking.registry import CHAMPION, client

    ledger = Ledger()
    first = verify(ledger, name)
    if not first.ok:
        raise OblivioError("audit verify failed on the demo's own record: "
                           + "; ".join(first.breaks))
    honouring = str(client().get_model_version_by_alias(name, CHAMPION).version)
    lines = [f"verify: ok ({'; '.join(first.facts)})",
             f"drill: {CHAMPION} moved to version 1 through MLflow, as a careless operator would"]
    client().set_registered_model_alias(name, CHAMPION, "1")
    caught = verify(ledger, name, weights=False)
    if caught.ok:
        raise OblivioError("audit verify did not catch a champion moved outside oblivio")
    lines += [f"verify: BREAK: {b}" for b in caught.breaks]
    lines.append(f"drill: {promote(name, honouring)}")
    again = verify(ledger, name, weights=False)
    if not again.ok:
        raise OblivioError("audit verify still fails once put right: " + "; ".join(again.breaks))
    lines.append("verify: ok again")
    return lines
