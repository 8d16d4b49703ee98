"""A report per deletion request that an auditor can file (``oblivio audit --ticket T --report
DIR``): ``report.json`` and a self-contained ``report.html`` with the request, its timeline
(every event of it and every move of ``champion``), the versions that honour it with their
weights hashes, the evidence logged for the batch that honoured it (the forgotten images beside
unseen ones, and beside the retrain where one was known), purge receipts, and the verification
of the whole record at the time of writing."""

from __future__ import annotations

import html
import json
from pathlib import Path

from oblivio.deletion.audit import audit
from oblivio.deletion.verify import verify
from oblivio.ledger.history import aware
from oblivio.ledger.store import Ledger


def build(ledger: Ledger, model_name: str, ticket: str, weights: bool = True) -> dict:
    """The report of the request(s) under ``ticket``, as plain data: the audit's entries
    (each version with its weights hash, purge tag and evidence) and the history around them."""
    requests = audit(ledger, model_name, ticket=ticket)
    model_events = ledger.events(model_name=model_name)
    ids = {e["request"]["id"] for e in requests}
    batches = {e["request"]["batch_id"] for e in requests if e["request"]["batch_id"]}
    timeline = [_event(e) for e in model_events
                if e.request_id in ids or e.event == "champion"
                or (e.batch_id in batches and e.event in ("taken_over", "registered"))]
    receipts = [_event(e) for e in model_events if e.event == "purged"]
    verdict = verify(ledger, model_name, weights)
    return {"model_name": model_name, "ticket": ticket, "requests": requests,
            "timeline": timeline, "purge_receipts": receipts,
            "verification": {"ok": verdict.ok, "breaks": verdict.breaks,
                             "facts": verdict.facts}}


def _event(row) -> dict:
    return {"seq": row.seq, "at": aware(row.at).isoformat(timespec="seconds"),
            "event": row.event, "request_id": row.request_id, "batch_id": row.batch_id,
            "detail": json.loads(row.detail), "hash": row.hash}


def write(report: dict, out: str | Path) -> list[Path]:
    """``report.json`` and ``report.html`` in ``out`` (created)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (folder / "report.html").write_text(render_html(report))
    return [folder / "report.json", folder / "report.html"]


def _table(headers: list[str], rows: list[list], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_text(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return (f"<table class='{css}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
            "</table>")


def _text(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return ", ".join(map(_text, value)) or "-"
    return str(value)


STYLE = """body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#1a1a1a}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;margin:.5rem 0}td,th{border:1px solid #ddd;
padding:.3rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}th{background:#f4f4f4}
td{overflow-wrap:anywhere}.timeline td:nth-child(-n+3){white-space:nowrap}
.ok{color:#05650f;font-weight:600}.bad{color:#b00020;font-weight:600}
code{font-size:.85rem}"""

def render_html(report: dict) -> str:
    """The report as one self-contained HTML page, every value escaped."""
    parts = [f"<h1>Deletion request report: ticket {html.escape(report['ticket'])} "
             f"({html.escape(report['model_name'])})</h1>"]
    check = report["verification"]
    state = ("<p class='ok'>Record verified: " if check["ok"]
             else "<p class='bad'>Record NOT verified: ")
    parts.append(state + html.escape("; ".join(check["facts"] if check["ok"]
                                               else check["breaks"])) + "</p>")
    for entry in report["requests"]:
        r = entry["request"]
        parts.append(f"<h2>Request {html.escape(r['id'])}</h2>")
        parts.append(_table(["field", "value"], [[k, v] for k, v in r.items()]))
        if r["state"] == "honoured":
            standing = "honours it" if entry["champion_honours"] else "DOES NOT honour it"
            parts.append(f"<p>First honoured by version {html.escape(str(entry['first_version']))}"
                         f" at {html.escape(str(entry['since']))}; the champion (version "
                         f"{html.escape(str(entry['champion']))}) {standing}.</p>")
        parts.append("<h2>Versions that honour it</h2>")
        parts.append(_table(
            ["version", "aliases", "method", "gate", "weights sha256", "purged"],
            [[v["version"], v["aliases"], v["method"], v["gate"], v["weights_sha256"],
              v["purged"]] for v in entry.get("versions", [])]))
        for v in entry.get("versions", []):
            parts.append(f"<h2>Evidence logged with version {html.escape(v['version'])} "
                         "(the batch that honoured it; beside unseen images and the retrain "
                         "where one was known)</h2>")
            parts.append(_table(["metric", "value"], [[k, val] for k, val in
                                                      v["evidence"].items()])
                         if v["evidence"] else "<p>No evaluation was logged with this "
                                               "version.</p>")
    parts.append("<h2>Timeline (this request's events and every champion move)</h2>")
    parts.append(_table(["#", "at (UTC)", "event", "batch", "detail", "hash"],
                        [[e["seq"], e["at"][:19].replace("T", " "), e["event"], e["batch_id"],
                          e["detail"], e["hash"][:16]] for e in report["timeline"]],
                        "timeline"))
    parts.append("<h2>Purge receipts</h2>")
    parts.append(_table(["#", "at", "detail"], [[e["seq"], e["at"], e["detail"]]
                                               for e in report["purge_receipts"]])
                 if report["purge_receipts"] else "<p>No purge recorded yet.</p>")
    if not check["ok"]:
        parts.append("<h2>Breaks</h2><ul>" + "".join(
            f"<li>{html.escape(b)}</li>" for b in check["breaks"]) + "</ul>")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>oblivio: "
            f"ticket {html.escape(report['ticket'])}</title><style>{STYLE}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")
