"""What the ledger demands of model versions: once a request is honoured, no version that still
knows its data may become champion again, and such versions' weights can be deleted
(``oblivio purge``) while their registry entries stay for the audit trail. Purge also erases
the other copies oblivio made of what was deleted: finished batches' ids files and their
Kubeflow runs' pipeline-root folders (also at the end of every batch), what the shadow models a
batch read know of the images it honoured, and on this machine the original's training
directory. Each erasure is a ``purged`` event with its receipt."""

from __future__ import annotations

from datetime import UTC, datetime

from oblivio.data.erase import erase
from oblivio.data.sample_ids import ids_sha256, read_sample_ids
from oblivio.deletion.rule import unhonoured
from oblivio.errors import OblivioError
from oblivio.home import oblivio_home
from oblivio.ledger.store import Ledger
from oblivio.tracking.registry import CHAMPION, TAG, client, logged_model_id, versions
from oblivio.tracking.store import connect

KNOWS_DELETED, PURGED = "knows_deleted", "purged"
SHADOWS = "shadow models"  # the copy a batch records for the shadows its runs read


def purge(ledger: Ledger, model_name: str, dry_run: bool = True) -> list[dict]:
    """Tag every version that still knows honoured data (``oblivio.knows_deleted``: the
    requests), and unless ``dry_run`` delete its logged model's artifacts (the weights) and tag
    it ``oblivio.purged``. The champion is never purged: it would be a violation, reported."""
    connect()
    aliases = client().get_registered_model(model_name).aliases
    champion = str(aliases.get(CHAMPION, ""))
    rows = []
    for version in versions(model_name):
        number = str(version.version)
        missing = unhonoured(ledger, model_name, version.tags)
        if not missing:
            continue
        if number == champion:
            raise OblivioError(f"{model_name} version {number} is {CHAMPION} but does not honour "
                               f"{', '.join(missing)}: promote a version that does first")
        client().set_model_version_tag(model_name, number, f"{TAG}{KNOWS_DELETED}",
                                       ",".join(missing)[:5000])
        done = version.tags.get(f"{TAG}{PURGED}")
        if not dry_run and not done:
            location = _delete_weights(version)
            done = datetime.now(UTC).isoformat(timespec="seconds")
            client().set_model_version_tag(model_name, number, f"{TAG}{PURGED}", done)
            ledger.record(model_name, "purged", version=number, what="registry artifacts",
                          where=location, knows=missing,
                          weights_sha256=version.tags.get(f"{TAG}weights_sha256"))
            if number == "1":
                erase_original_dir(ledger, model_name)
        rows.append({"version": number, "knows": missing, "purged": done,
                     "aliases": sorted(a for a, v in aliases.items() if str(v) == number)})
    if not dry_run:
        erase_batch_files(ledger, model_name)
        erase_run_copies(ledger, model_name)
    return rows


def erase_batch_files(ledger: Ledger, model_name: str, keep: str | None = None) -> list[dict]:
    """Erase what every finished batch of the model left: its ids file, the pipeline-root
    folders of its Kubeflow runs, every object version on S3 (``keep``: the calling step's own
    folder, left to it), and what the shadows it read know of what it honoured, recording a
    receipt for each. Returns the receipts."""
    receipts = []
    for batch_id, uri in ledger.unerased_ids_files(model_name):
        receipt = erase(uri)
        ledger.erased_ids_file(batch_id, receipt)
        receipts.append(receipt)
    for batch_id, what, uri in ledger.unerased_copies(model_name):
        receipt = forget_in_shadows(ledger, batch_id, uri) if what == SHADOWS \
            else erase(uri, keep)
        ledger.erased_copy(batch_id, uri, what, receipt)
        receipts.append(receipt)
    return receipts


def forget_in_shadows(ledger: Ledger, batch_id: str, shadows: str) -> dict:
    """Erase from the shadows what they know of the batch's honoured requests (none honoured:
    nothing; its requests went back and a later batch erases them). Returns the receipt."""
    from oblivio.evaluation.shadows import erase_images  # numpy, pyarrow: only when needed

    honoured = ledger.find(batch_id=batch_id, state="honoured")
    ids = [i for r in honoured if r.kind == "ids" for i in ledger.items_of(r.id)]
    classes = any(r.kind == "classes" for r in honoured)
    if not ids and not classes:
        return {"where": shadows, "objects": [], "images": 0}
    return erase_images(shadows, ids, every_shadow=classes)


def erase_original_dir(ledger: Ledger, model_name: str) -> dict | None:
    """The directory this machine trained the original in (``$OBLIVIO_HOME/models``), erased
    once version 1 knows deleted data; None when there is none."""
    folder = oblivio_home() / "models" / f"{model_name}-original"
    if not folder.exists():
        return None
    receipt = erase(str(folder))
    ledger.record(model_name, "purged", version="1", what="the original's training directory",
                  **receipt)
    return receipt


def _erase_artifacts(location: str, path: str | None = None) -> dict:
    """Delete MLflow artifacts at ``location`` (under it, ``path`` only): on S3 every object
    version and delete marker, which MLflow's own delete leaves in a versioned bucket.
    Returns the receipt."""
    from urllib.parse import urlparse

    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    where = f"{location.rstrip('/')}/{path}" if path else location
    if urlparse(where).scheme in ("", "file", "s3"):
        return erase(where)
    repo = get_artifact_repository(location)
    objects = [{"name": f.path} for f in repo.list_artifacts(path) if not f.is_dir] \
        if path is None else [{"name": path}]
    repo.delete_artifacts(path)
    return {"where": where, "objects": objects}


def erase_run_copies(ledger: Ledger, model_name: str) -> list[dict]:
    """Erase the deletion requests' id lists that runs of an older oblivio logged as artifacts
    (``samples/forget.parquet``; runs now log only the plan, by digest): each one whose ids the
    ledger holds for this model, with a receipt. Returns the receipts."""
    import tempfile

    experiment = connect()
    receipts = []
    token = None
    while True:
        page = client().search_runs([experiment], "params.forget_ids_uri != ''",
                                    max_results=500, page_token=token)
        for run in page:
            run_id = run.info.run_id
            if "samples/forget.parquet" not in {
                    a.path for a in client().list_artifacts(run_id, "samples")}:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                ids = read_sample_ids(client().download_artifacts(
                    run_id, "samples/forget.parquet", tmp)).to_pylist()
            if not ledger.names_any(model_name, "ids", ids):
                continue
            receipt = _erase_artifacts(run.info.artifact_uri, "samples/forget.parquet")
            receipt["objects"] = [{**o, "ids_sha256": ids_sha256(ids), "count": len(ids)}
                                  for o in receipt["objects"]]
            ledger.record(model_name, "purged", what="run artifact", run_id=run_id, **receipt)
            receipts.append(receipt)
        token = page.token
        if not token:
            return receipts


def _delete_weights(version) -> str:
    """Delete the artifacts of the version's logged model (its weights, in both forms, every
    object version on S3). Returns where they were."""
    model_id = logged_model_id(version)
    if not model_id:  # registered from a run's artifacts, before logged models
        location = version.source
    else:
        location = client().get_logged_model(model_id).artifact_location
    _erase_artifacts(location)
    return location
