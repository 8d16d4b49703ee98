"""Deletion requests: `oblivio requests submit | list`, `batch run`, `ledger upgrade`, `demo`,
`purge`, `audit`, `audit verify`."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from oblivio.cli.app import app, one_line_errors
from oblivio.cli.options import (
    DataOption,
    InstanceMaxSeconds,
    ModelName,
    ShadowsOption,
    local_model,
    print_lineage,
)
from oblivio.errors import OblivioError

requests_app = typer.Typer(help="Deletion requests: intake and the ledger.", no_args_is_help=True)
app.add_typer(requests_app, name="requests")
batch_app = typer.Typer(help="Deletion batches: honour what is pending.", no_args_is_help=True)
app.add_typer(batch_app, name="batch")


@requests_app.command("submit")
@one_line_errors
def requests_submit(
    ids: Annotated[str | None, typer.Option(
        help="Text or Parquet file (or s3:// URI) of training sample ids to delete.")] = None,
    classes: Annotated[str | None, typer.Option(
        help="Classes to forget: indices or names, e.g. 7,Sneaker; 'next': the next class the "
             "champion still knows.")] = None,
    ticket: Annotated[str | None, typer.Option(
        help="Your reference, e.g. GDPR-2026-114: one request per ticket and model.")] = None,
    deadline: Annotated[str | None, typer.Option(help="Honour by (YYYY-MM-DD).")] = None,
    model_name: ModelName = "fashion-classifier",
    data: DataOption = None,
) -> None:
    """Check a request against the champion and the dataset, record it as pending, print its
    id. The same request again (its ticket, or the same items) prints the recorded one.
    Unknown model, unknown, test-split or duplicate ids, classes already forgotten, items of
    another request: one error line, nothing recorded."""
    from datetime import date

    from oblivio.deletion.intake import submit_request
    from oblivio.home import oblivio_home
    from oblivio.ledger.store import Ledger, check_ticket
    from oblivio_pipeline.local import ensure_dataset

    try:
        due = date.fromisoformat(deadline) if deadline else None
    except ValueError:
        raise OblivioError(f"--deadline {deadline!r} is not a date (YYYY-MM-DD)") from None
    check_ticket(ticket)
    ledger = Ledger()
    if (ids is None) == (classes is None):
        raise OblivioError("a request names sample ids (--ids) or classes (--classes), one of them")
    dataset = data or str(ensure_dataset(oblivio_home(), "/usr/share/datasets/fashion-mnist"))
    if classes == "next":
        from oblivio_pipeline.local import next_class

        classes = next_class(model_name)
    request, new = submit_request(ledger, model_name, dataset, ids, classes, ticket, due)
    if not new:
        print(f"already recorded: {request.id} ({request.state})", file=sys.stderr)
    elif request.state == "honoured":
        print(f"honoured at once: version {request.version} has already forgotten it",
              file=sys.stderr)
    print(request.id)


@requests_app.command("list")
@one_line_errors
def requests_list(
    state: Annotated[str | None, typer.Option(
        help="pending, claimed, honoured or failed.")] = None,
    model_name: Annotated[str | None, typer.Option(help="Only this model's.")] = None,
    overdue: Annotated[bool, typer.Option(
        "--overdue", help="Only requests past their deadline and not honoured; exit 1 when "
                          "there is any (for a monitor).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """The ledger's requests, oldest first, with their deadlines."""
    from datetime import date

    from oblivio.ledger.store import Ledger

    today = date.today()
    found = Ledger().find(state=state, model_name=model_name,
                          overdue=today if overdue else None)
    if as_json:
        for r in found:
            print(json.dumps(r.as_dict() | {"overdue": r.overdue(today)}))
    else:
        print(f"{'request':<16} {'model':<20} {'kind':<7} {'count':>6} {'state':<9} "
              f"{'tries':>5} {'ticket':<16} {'deadline':<11} {'version':>7}  last error")
        for r in found:
            due = r.deadline.isoformat() + ("!" if r.overdue(today) else "") if r.deadline else "-"
            print(f"{r.id:<16} {r.model_name:<20} {r.kind:<7} {r.count:>6} {r.state:<9} "
                  f"{r.attempts:>5} {r.ticket or '-':<16} {due:<11} {r.version or '-':>7}  "
                  f"{(r.last_error or '-')[:80]}")
    if overdue and found:
        print(f"{len(found)} request(s) past their deadline", file=sys.stderr)
        raise typer.Exit(1)


ledger_app = typer.Typer(help="The ledger's database.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("upgrade")
@one_line_errors
def ledger_upgrade() -> None:
    """Migrate the ledger (OBLIVIO_LEDGER_ADMIN_URL, the schema owner's, else
    OBLIVIO_LEDGER_URL, else the oblivio home's) to this oblivio's schema; a ledger already
    there is left as it is."""
    import os

    from oblivio.ledger.store import ADMIN_ENV, Ledger

    before, after = Ledger(os.environ.get(ADMIN_ENV), migrate=True).upgrade()
    print(f"ledger at schema revision {after}" + (f" (was {before})"
                                                   if before != after else " already"))


@batch_app.command("run")
@one_line_errors
def batch_run(
    model_name: ModelName = "fashion-classifier",
    data: DataOption = None,
    lease_minutes: Annotated[int, typer.Option(
        help="How long the claim holds before another run may take the batch over.")] = 360,
    max_attempts: Annotated[int, typer.Option(
        help="Attempts before a request is marked failed.")] = 3,
    epochs: Annotated[int, typer.Option(
        help="Epochs of the original model when it has to be trained first.")] = 1,
    shadows: ShadowsOption = None,
    instance_max_seconds: InstanceMaxSeconds = 0.0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
) -> None:
    """Honour every pending request once: claim them, forget the classes then the images from
    the champion (the pipeline, locally), promote, mark them honoured. Nothing pending: no
    run, exit 0."""
    from datetime import timedelta

    from oblivio.ledger.store import Ledger
    from oblivio_pipeline.batch import run_batch

    if lease_minutes < 1 or max_attempts < 1:
        raise OblivioError("--lease-minutes and --max-attempts must be at least 1")
    ledger = Ledger()
    dataset = local_model(model_name, data, epochs, device)
    result = run_batch(model_name, dataset, timedelta(minutes=lease_minutes), max_attempts,
                       ledger, device=device, shadows_uri=shadows or "",
                       instance_max_seconds=instance_max_seconds)
    if result.batch is None:
        held = ledger.held_batches(model_name)
        print("nothing pending" + "".join(
            f"; {b['id']} is held by {b['owner']} until {b['lease_until']:%Y-%m-%d %H:%M} UTC"
            for b in held))
        return
    for report in result.reports:
        print(report)
    done = ", ".join(f"{kind} by version {v}" for kind, v in result.honoured.items())
    print(f"{result.batch}: honoured {len(result.requests)} request(s): {done}")
    print_lineage(model_name)


@app.command()
@one_line_errors
def demo(
    seed: Annotated[int, typer.Option(
        help="Seeds the image draw (and the original, on a fresh home).")] = 0,
    images: Annotated[int, typer.Option(help="Training images the deletion request names.")] = 32,
    model_name: ModelName = "fashion-classifier",
    data: DataOption = None,
    epochs: Annotated[int, typer.Option(
        help="Epochs of the original model when it has to be trained first.")] = 1,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
) -> None:
    """What make demo runs: request the next class the champion knows and a seeded draw of
    training images, honour both in one deletion batch, print who honours what, the lineage
    and the audit; then `audit verify`, a champion moved by hand that verify catches, and
    promote putting it right. Either request not honoured: one error line, exit 2."""
    from oblivio.deletion.audit import audit as run_audit
    from oblivio.deletion.audit import render
    from oblivio.ledger.store import Ledger
    from oblivio_pipeline.demo import run_demo

    if images < 1:
        raise OblivioError("--images must be at least 1")
    dataset = local_model(model_name, data, epochs, device, seed)
    result = run_demo(model_name, dataset, seed, images, device=device)
    print_lineage(model_name)
    for kind in ("classes", "ids"):
        print(render(run_audit(Ledger(), model_name, ticket=result.tickets[kind])))
    for kind in ("classes", "ids"):
        print(f"demo: {result.named[kind]} (request {result.requests[kind]}, ticket "
              f"{result.tickets[kind]}) honoured by version {result.honoured[kind]}")
    from oblivio_pipeline.demo import tamper_drill

    for line in tamper_drill(model_name):
        print(line)


@app.command()
@one_line_errors
def purge(
    model_name: ModelName = "fashion-classifier",
    dry_run: Annotated[bool, typer.Option(help="Tag and list, delete nothing.")] = False,
) -> None:
    """Tag every version that still knows data of an honoured request and delete its weights
    (registry entries and lineage stay, for the audit); erase finished batches' ids files and,
    with version 1, this machine's training folder of the original. Each erasure is a receipt
    in the ledger's history."""
    from oblivio.deletion.purge import purge as run_purge
    from oblivio.ledger.store import Ledger

    rows = run_purge(Ledger(), model_name, dry_run)
    for row in rows:
        state = ("would delete" if dry_run and not row["purged"] else
                 f"purged {row['purged']}")
        print(f"version {row['version']:>4}  {state}  knows {', '.join(row['knows'])}")
    if not rows:
        print("every version honours every honoured request")


audit_app = typer.Typer(help="The auditor's questions.", invoke_without_command=True)
app.add_typer(audit_app, name="audit")


@audit_app.callback()
@one_line_errors
def audit(
    ctx: typer.Context,
    ticket: Annotated[str | None, typer.Option(help="A request's ticket.")] = None,
    sample_id: Annotated[str | None, typer.Option(help="A training sample id.")] = None,
    class_: Annotated[str | None, typer.Option("--class", help="A class index or name.")] = None,
    model_name: ModelName = "fashion-classifier",
    as_json: Annotated[bool, typer.Option("--json", help="JSON.")] = False,
    report: Annotated[str | None, typer.Option(
        help="With --ticket: write report.json and report.html, for the auditor's file, "
             "into this folder.")] = None,
) -> None:
    """Which versions honour a request (by ticket, image or class), since when, whether the
    champion does, and the evidence of each; exit 1 when the champion does not honour an
    honoured request. `oblivio audit verify` checks the whole record."""
    if ctx.invoked_subcommand is not None:
        return
    if report is not None:
        if ticket is None:
            raise OblivioError("--report needs --ticket: a report is of one request")
        from oblivio.deletion import request_report
        from oblivio.ledger.store import Ledger

        built = request_report.build(Ledger(), model_name, ticket)
        for path in request_report.write(built, report):
            print(path)
        if not built["verification"]["ok"] or any(
                e.get("champion_honours") is False for e in built["requests"]):
            raise typer.Exit(1)
        return
    from oblivio.deletion.audit import audit as run_audit
    from oblivio.deletion.audit import render
    from oblivio.ledger.store import Ledger

    index = None
    if class_ is not None:
        from oblivio.tracking.registry import CHAMPION, version_config

        if class_.isdigit():
            index = int(class_)
        else:  # a name: the champion's own class names say which index
            names = version_config(f"models:/{model_name}@{CHAMPION}")["class_names"]
            if class_ not in names:
                raise OblivioError(f"unknown class {class_!r}; classes: {', '.join(names)}")
            index = names.index(class_)
    entries = run_audit(Ledger(), model_name, ticket=ticket, sample_id=sample_id,
                        class_index=index)
    print(json.dumps(entries, indent=1, default=str) if as_json else render(entries))
    if any(e.get("champion_honours") is False for e in entries):
        raise typer.Exit(1)


@audit_app.command("verify")
@one_line_errors
def audit_verify(
    model_name: ModelName = "fashion-classifier",
    weights: Annotated[bool, typer.Option(
        help="Hash the champion's weights as the registry serves them.")] = True,
    pushgateway: Annotated[str | None, typer.Option(
        help="Prometheus Pushgateway URL: push oblivio_audit_verify_breaks there.")] = None,
) -> None:
    """Recompute the history's hash chain and check the ledger's rows and the registry
    (champion, its weights, the lineage tags of every version the history names) against it.
    Exit 1 on any break, one line each."""
    from oblivio.deletion.verify import push_metric, verify
    from oblivio.ledger.store import Ledger

    verdict = verify(Ledger(), model_name, weights)
    if pushgateway:
        push_metric(pushgateway, model_name, verdict)
    for fact in verdict.facts:
        print(f"ok: {fact}")
    for line in verdict.breaks:
        print(f"BREAK: {line}")
    if not verdict.ok:
        print(f"audit verify: {len(verdict.breaks)} break(s)", file=sys.stderr)
        raise typer.Exit(1)
