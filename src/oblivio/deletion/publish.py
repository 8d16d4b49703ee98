"""The pipeline's ends: resolve the registered parent model, and register the unlearned one
with its lineage, gate verdict and aliases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from oblivio.deletion.promotion import promote
from oblivio.errors import OblivioError
from oblivio.evaluation.gates import Gates, check_gates, flat_metrics, verdict
from oblivio.models.config import read_config
from oblivio.tracking.registry import (
    CANDIDATE,
    TAG,
    Lineage,
    client,
    downloaded,
    forgotten,
    log_model_version,
    resolve_version,
    version_for_batch,
)
from oblivio.tracking.runs import run_id_of, start_run
from oblivio.tracking.store import connect
from oblivio.unlearn.methods import check_pipeline_params


def resolve_parent(model_uri: str, dst: str, job_id: str, job_name: str, params: dict) -> dict:
    """Download the registered model ``model_uri`` to ``dst``, start the job's MLflow run and
    log the parent model as its input. Returns the parent's name and version."""
    from mlflow.entities import LoggedModelInput

    check_pipeline_params(params)
    connect()
    version = resolve_version(model_uri)
    with downloaded(f"models:/{version.name}/{version.version}") as local:
        shutil.copytree(local, dst, dirs_exist_ok=True)
    read_config(dst)
    run_id = start_run(job_id, job_name, {**params, "parent_version": version.version})
    if getattr(version, "model_id", None):
        client().log_inputs(run_id, models=[LoggedModelInput(version.model_id)])
    return {"name": version.name, "version": str(version.version)}


def register_unlearned(model_dir: str, report_dir: str, name: str, parent_version: str,
                       job_id: str, job_name: str, gates: Gates, deletion_batch: str = "",
                       promote_if_passed: bool = True) -> dict:
    """Register ``model_dir`` as a new version of ``name`` (alias ``candidate``) with lineage
    tags and the gate verdict; make it ``champion`` when the gates pass and it honours every
    deletion of the current champion. Idempotent per ``deletion_batch``: a version already
    registered for it (a run that died before recording its outcome) is returned instead, and
    promoted if it passed and was not yet."""
    import mlflow

    connect()
    if deletion_batch:
        existing = version_for_batch(name, deletion_batch)
        if existing is not None:
            return finish_registration(name, existing.version,
                                       existing.tags.get(f"{TAG}gate", ""), gates,
                                       promote_if_passed, already=True)
    config = read_config(model_dir)
    prov = config.get("provenance", {})
    report = json.loads(Path(report_dir, "report.json").read_text())
    failures = check_gates(flat_metrics(report), gates)
    parent = resolve_version(f"models:/{name}/{parent_version}")
    _, parent_batches = forgotten(parent.tags)
    ids_digest = prov.get("forget_ids_sha256")  # this request's, not the union evaluated
    lineage = Lineage(
        method=prov.get("method", "unknown"),
        params={k: prov[k] for k in ("alpha", "alpha_mode", "forget_target", "forget_margin",
                                     "samples", "seed", "solver", "params", "steps", "cap_hit",
                                     "deadline_hit")
                if k in prov},
        parent_version=str(parent_version),
        forget_classes=prov.get("forget_classes", []),
        forget_ids_sha256=ids_digest,
        forgotten_classes=prov.get("forgotten_classes", []),
        forgotten_batches=sorted(parent_batches | ({ids_digest} if ids_digest else set())),
        deletion_batch=deletion_batch or None,
        pipeline_run=job_name or job_id,
        gate=verdict(failures))
    with mlflow.start_run(run_id=run_id_of(job_id)):
        version = log_model_version(model_dir, name, lineage, alias=CANDIDATE)
    return finish_registration(name, str(version.version), lineage.gate, gates, promote_if_passed)


def finish_registration(name: str, version: str, gate: str, gates: Gates,
                        promote_if_passed: bool, already: bool = False) -> dict:
    """Promote a registered version when its gates passed; record and return the outcome."""
    result = {"name": name, "version": str(version), "gate": gate, "champion": False,
              "promotion": "gates failed: not promoted", "already_registered": already}
    if gate == "passed" and promote_if_passed:
        try:
            result["promotion"] = promote(name, str(version), gates)
            result["champion"] = True
        except OblivioError as exc:
            result["promotion"] = str(exc)
    elif not promote_if_passed:
        result["promotion"] = "promotion not requested"
    client().set_model_version_tag(name, str(version), f"{TAG}promotion",
                                   result["promotion"][:5000])
    return result
