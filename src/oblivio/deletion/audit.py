"""The auditor's question: which model versions honour request X, since when, with what
evidence. The ledger says which requests name a ticket, image or class and which version first
honoured each; the registry's lineage tags say every version that has forgotten it (a version
honours a class request when it has forgotten each of its classes, an image request when it has
forgotten the batch of images it was honoured in)."""

from __future__ import annotations

import json
from datetime import date

from oblivio.errors import OblivioError
from oblivio.ledger.store import Ledger, Request
from oblivio.tracking.registry import CHAMPION, TAG, client, forgotten, versions
from oblivio.tracking.store import connect

#: the evidence shown per version: accuracy and the attacks, and their gaps to the retrain
#: oracle when the evaluation had one
EVIDENCE = ("retain_test_acc", "forget_test_acc", "forget_train_acc", "original_retain_test_acc",
            "mia_efficacy_confidence", "mia_loss_auc", "mia_loss_auc_sd", "mia_loss_lr_cv_acc")


def find_requests(ledger: Ledger, model_name: str, ticket: str | None = None,
                  sample_id: str | None = None, class_index: int | None = None
                  ) -> list[Request]:
    given = [v for v in (ticket, sample_id, class_index) if v is not None]
    if len(given) != 1:
        raise OblivioError("audit one thing: --ticket, --sample-id or --class")
    if ticket is not None:
        found = ledger.find(model_name=model_name, ticket=ticket)
    elif sample_id is not None:
        found = ledger.requests_naming(model_name, "ids", sample_id)
    else:
        found = ledger.requests_naming(model_name, "classes", str(class_index))
    if not found:
        what = (f"ticket {ticket}" if ticket is not None else f"sample {sample_id}"
                if sample_id is not None else f"class {class_index}")
        raise OblivioError(f"no request for {what} of {model_name} in the ledger")
    return found


def audit(ledger: Ledger, model_name: str, **which: str | int | None) -> list[dict]:
    """One entry per matching request: its record, and when honoured, every version that
    honours it (with method, parameters, gate and evidence), the first, and the champion's
    standing."""
    requests = find_requests(ledger, model_name, **which)
    connect()
    every = versions(model_name)
    aliases: dict[str, list[str]] = {}
    for alias, number in client().get_registered_model(model_name).aliases.items():
        aliases.setdefault(str(number), []).append(alias)
    champion = next((v for v, names in aliases.items() if CHAMPION in names), None)
    entries = []
    for request in requests:
        entry: dict = {"request": request.as_dict()}
        if request.state == "honoured":
            if request.kind == "classes":
                need = {int(c) for c in ledger.items_of(request.id)}
                honours = [v for v in every if need <= forgotten(v.tags)[0]]
            else:
                digest = ledger.batch_row(request.batch_id)["ids_sha256"]
                honours = [v for v in every if digest in forgotten(v.tags)[1]]
            numbers = [str(v.version) for v in honours]
            entry |= {"first_version": request.version, "since": request.as_dict()["honoured_at"],
                      "champion": champion, "champion_honours": champion in numbers,
                      "versions": [_evidence(v, aliases, TAG) for v in honours]}
        entries.append(entry)
    return entries


def _evidence(version, aliases: dict[str, list[str]], tag: str) -> dict:
    metrics = client().get_run(version.run_id).data.metrics if version.run_id else {}
    shown = {k: metrics[k] for k in EVIDENCE if k in metrics}
    shown |= {k: v for k, v in metrics.items() if k.endswith("_gap_to_oracle")}
    return {"version": str(version.version),
            "created": version.creation_timestamp,
            "aliases": sorted(aliases.get(str(version.version), [])),
            "method": version.tags.get(f"{tag}method"),
            "params": json.loads(version.tags.get(f"{tag}params", "{}")),
            "parent": version.tags.get(f"{tag}parent_version"),
            "deletion_batch": version.tags.get(f"{tag}deletion_batch"),
            "gate": version.tags.get(f"{tag}gate"),
            "weights_sha256": version.tags.get(f"{tag}weights_sha256"),
            "purged": version.tags.get(f"{tag}purged"),
            "evidence": shown}


def render(entries: list[dict]) -> str:
    """The audit as text, one block per request."""
    lines = []
    for entry in entries:
        r = entry["request"]
        due = ""
        if r["deadline"]:
            late = r["state"] != "honoured" and r["deadline"] < date.today().isoformat()
            due = f"  deadline {r['deadline']}{' OVERDUE' if late else ''}"
        lines.append(f"{r['id']}  {r['kind']} x{r['count']}  ticket {r['ticket'] or '-'}  "
                     f"state {r['state']}  attempts {r['attempts']}  sha256 {r['sha256'][:12]}"
                     + due)
        if r["state"] != "honoured":
            lines.append(f"  not honoured yet{': ' + r['last_error'] if r['last_error'] else ''}")
            continue
        standing = "honours it" if entry["champion_honours"] else "DOES NOT honour it"
        lines.append(f"  first honoured by version {entry['first_version']} at {entry['since']};"
                     f" champion (version {entry['champion']}) {standing}")
        for v in entry["versions"]:
            ev = ", ".join(f"{k} {val:.4f}" for k, val in v["evidence"].items())
            lines.append(f"  version {v['version']} ({','.join(v['aliases']) or '-'}): "
                         f"{v['method']}, gate {v['gate']}; {ev}")
    return "\n".join(lines)
