"""Registered model versions and their lineage (docs/architecture.md, "MLflow lineage").

A version is logged with ``mlflow.pytorch`` (so MLflow users load it as usual) and carries the
oblivio model directory beside it (``extra_files``), which :func:`download_model_dir` fetches
for ``oblivio.load_model("models:/NAME@ALIAS")``: that path never unpickles.
Lineage tags are set when the version is created, in the same call, so no version exists
without them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from oblivio.errors import OblivioError
from oblivio.models.config import CONFIG_FILE, WEIGHTS_FILE, read_config

TAG = "oblivio."
CHAMPION, CANDIDATE = "champion", "candidate"


@dataclass
class Lineage:
    """What a version is and what it has forgotten, as registry tags."""

    method: str
    params: dict = field(default_factory=dict)
    parent_version: str | None = None
    forget_classes: list[int] = field(default_factory=list)
    forget_ids_sha256: str | None = None
    forgotten_classes: list[int] = field(default_factory=list)  # cumulative
    forgotten_batches: list[str] = field(default_factory=list)  # cumulative ids digests
    deletion_batch: str | None = None
    pipeline_run: str | None = None
    gate: str = "not checked"

    def tags(self) -> dict[str, str]:
        tags = {f"{TAG}method": self.method, f"{TAG}params": json.dumps(self.params,
                                                                       sort_keys=True),
                f"{TAG}forgotten_classes": ",".join(map(str, sorted(self.forgotten_classes))),
                f"{TAG}forgotten_batches": ",".join(sorted(self.forgotten_batches)),
                f"{TAG}gate": self.gate}
        if self.parent_version is not None:
            tags[f"{TAG}parent_version"] = str(self.parent_version)
        if self.forget_classes:
            tags[f"{TAG}forget_classes"] = ",".join(map(str, sorted(self.forget_classes)))
        if self.forget_ids_sha256:
            tags[f"{TAG}forget_ids_sha256"] = self.forget_ids_sha256
        for key in ("deletion_batch", "pipeline_run"):
            if getattr(self, key):
                tags[f"{TAG}{key}"] = str(getattr(self, key))
        return tags


def _split(text: str | None) -> list[str]:
    return [v for v in (text or "").split(",") if v]


def forgotten(tags: dict[str, str]) -> tuple[set[int], set[str]]:
    """The classes and deletion batches a version has forgotten, from its tags."""
    return ({int(v) for v in _split(tags.get(f"{TAG}forgotten_classes"))},
            set(_split(tags.get(f"{TAG}forgotten_batches"))))


#: the tags that say what a version is and has forgotten: set once, at registration
LINEAGE_TAGS = ("method", "params", "parent_version", "forget_classes", "forget_ids_sha256",
                "forgotten_classes", "forgotten_batches", "deletion_batch", "weights_sha256")


def lineage_sha256(tags: dict[str, str]) -> str:
    """A digest of a version's lineage tags, which the ledger's history records whenever it
    names the version: an edit of them afterwards (the MLflow UI, the API) shows."""
    import hashlib

    shown = {k: tags.get(f"{TAG}{k}") for k in LINEAGE_TAGS}
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()


def logged_model_id(version) -> str | None:
    """The id of the logged model a version was registered from (``models:/m-...``)."""
    model_id = getattr(version, "model_id", None)
    if not model_id and (version.source or "").startswith("models:/m-"):
        model_id = version.source.removeprefix("models:/").split("/")[0]
    return model_id or None


def version_evidence(version) -> dict[str, str | None]:
    """What the history records of a version it names: its logged model, weights and lineage
    digests."""
    return {"model_id": logged_model_id(version),
            "weights_sha256": version.tags.get(f"{TAG}weights_sha256"),
            "lineage_sha256": lineage_sha256(version.tags)}


def client():
    from mlflow import MlflowClient

    return MlflowClient()


def log_model_version(model_dir: str | os.PathLike[str], name: str, lineage: Lineage,
                      alias: str | None = None):
    """Log the model in the active run, register it as a new version of ``name`` with its
    lineage tags, and point ``alias`` at it. Returns the ModelVersion."""
    import mlflow
    import numpy as np

    from oblivio.models.checkpoint import load_model  # torch: not for the control steps

    model = load_model(model_dir)
    cfg = model.config
    # a batch of 2: torch.export would specialise a batch of 1 and reject other sizes
    example = np.zeros((2, cfg["in_chans"], cfg["img_size"], cfg["img_size"]), np.float32)
    info = mlflow.pytorch.log_model(
        model, name="model", input_example=example, serialization_format="pt2",
        extra_files=[str(Path(model_dir, WEIGHTS_FILE)), str(Path(model_dir, CONFIG_FILE))],
        pip_requirements=["torch", "timm", "oblivio"])
    tags = lineage.tags() | {f"{TAG}weights_sha256": cfg["weights_sha256"]}
    version = mlflow.register_model(info.model_uri, name, tags=tags)
    if alias == CHAMPION:  # a champion move is the deletion rule's, recorded in the ledger
        raise OblivioError("register a champion with oblivio.deletion.promotion."
                           "register_champion")
    if alias:
        client().set_registered_model_alias(name, alias, version.version)
    return version


def resolve_version(uri: str):
    """The ModelVersion named by ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``; an alias
    of digits names that version (``models:/NAME@3``), which is how a pipeline's
    ``model_alias`` parameter takes a version number, such as the one a deletion batch's
    classes left as champion."""
    from mlflow.exceptions import MlflowException

    if not uri.startswith("models:/"):
        raise OblivioError(f"not a registry URI: {uri!r} (expected models:/NAME@ALIAS)")
    ref = uri.removeprefix("models:/")
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            if alias.isdigit():
                return client().get_model_version(name, alias)
            return client().get_model_version_by_alias(name, alias)
        name, _, number = ref.partition("/")
        return client().get_model_version(name, number)
    except MlflowException as exc:
        raise OblivioError(f"{uri}: {exc.message.splitlines()[0]}") from None


def download_model_dir(uri: str, dst: str | os.PathLike[str]) -> Path:
    """The oblivio model directory of a registered version, downloaded under ``dst``."""
    import mlflow

    from oblivio.tracking.store import connect

    connect()
    version = resolve_version(uri)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{version.name}/{version.version}", dst_path=str(dst))
    return Path(local) / "extra_files"


def version_config(uri: str) -> dict:
    """A registered version's ``config.json`` alone (class names, what it has forgotten):
    what a check needs, without downloading the weights, and without a progress bar."""
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    from oblivio.tracking.store import connect

    connect()
    version = resolve_version(uri)
    repo = ModelsArtifactRepository(f"models:/{version.name}/{version.version}")
    quiet = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        with tempfile.TemporaryDirectory(prefix="oblivio-config-") as tmp:
            repo.download_artifacts(f"extra_files/{CONFIG_FILE}", tmp)
            return read_config(Path(tmp) / "extra_files")
    finally:
        if quiet is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = quiet


@contextlib.contextmanager
def downloaded(uri: str) -> Iterator[Path]:
    """A registered version's model directory in a temporary directory that is removed when
    the block ends: a copy of weights left behind would outlive their purge."""
    with tempfile.TemporaryDirectory(prefix="oblivio-model-") as tmp:
        yield download_model_dir(uri, tmp)


def versions(name: str) -> list:
    """Every version of ``name``, oldest first."""
    from mlflow.exceptions import MlflowException

    try:
        found = client().search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        raise OblivioError(f"{name}: {exc.message.splitlines()[0]}") from None
    if not found:
        raise OblivioError(f"no registered model named {name!r}")
    return sorted(found, key=lambda v: int(v.version))


def model_exists(name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client().get_registered_model(name)
    except MlflowException:
        return False
    return True


KEY_METRICS = ("retain_test_acc", "forget_test_acc", "forget_train_acc", "mia_efficacy_confidence",
               "mia_loss_auc")


def lineage(name: str) -> list[dict]:
    """One row per version, oldest first: parent, method, what it forgot, key metrics, aliases."""
    rows = []
    aliases: dict[str, list[str]] = {}
    if not model_exists(name):
        raise OblivioError(f"no registered model named {name!r}")
    for alias, number in client().get_registered_model(name).aliases.items():
        aliases.setdefault(str(number), []).append(alias)
    for v in versions(name):
        metrics = client().get_run(v.run_id).data.metrics if v.run_id else {}
        tags = v.tags
        rows.append({
            "version": str(v.version),
            "parent": tags.get(f"{TAG}parent_version"),
            "method": tags.get(f"{TAG}method", "?"),
            "forget": tags.get(f"{TAG}forget_classes")
            or (tags.get(f"{TAG}forget_ids_sha256", "")[:12] or None),
            "forgotten_classes": tags.get(f"{TAG}forgotten_classes", ""),
            "gate": tags.get(f"{TAG}gate"),
            "aliases": sorted(aliases.get(str(v.version), [])),
            "metrics": {k: metrics[k] for k in KEY_METRICS if k in metrics},
        })
    return rows


def version_for_batch(name: str, deletion_batch: str):
    """The version of ``name`` registered for ``deletion_batch``, or None."""
    import re

    from mlflow.exceptions import MlflowException

    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,200}", deletion_batch):
        raise OblivioError(f"deletion batch id {deletion_batch!r}: letters, digits and ._:- only")
    try:
        found = client().search_model_versions(
            f"name = '{name}' and tags.`{TAG}deletion_batch` = '{deletion_batch}'")
    except MlflowException as exc:
        raise OblivioError(f"{name}: {exc.message.splitlines()[0]}") from None
    return min(found, key=lambda v: int(v.version)) if found else None
