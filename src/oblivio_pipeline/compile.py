"""Compile each pipeline to the ``pipeline.yaml`` committed beside its ``pipeline.py``
(deterministic output, so a test can tell when the committed file is stale)."""

from __future__ import annotations

import re
from pathlib import Path

from kfp import compiler

from oblivio.errors import OblivioError
from oblivio_pipeline import IMAGE
from oblivio_pipeline.pipelines.oblivio_deletion_batch import deletion_batch_pipeline
from oblivio_pipeline.pipelines.oblivio_unlearning import unlearning_pipeline

#: Folder name under pipelines/ -> the pipeline.
PIPELINES = {"oblivio_unlearning": unlearning_pipeline,
             "oblivio_deletion_batch": deletion_batch_pipeline}


def retarget(text: str, image: str) -> str:
    """A compiled pipeline with every step running ``image`` (``repo:tag`` or
    ``repo@sha256:...``) instead of the project image it was compiled with."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9._/:-]*(:[\w.-]+|@sha256:[0-9a-f]{64})", image):
        raise OblivioError(f"--image {image!r}: expected registry/repository:tag or "
                           "registry/repository@sha256:<64 hex digits>")
    if f"image: {IMAGE}\n" not in text:
        raise OblivioError(f"the pipeline's steps do not run {IMAGE}: nothing to point at "
                           f"{image}")
    return text.replace(f"image: {IMAGE}\n", f"image: {image}\n")


def compile_pipelines(out_dir: str | Path, image_digest: str | None = None) -> list[Path]:
    """Write ``<name>/pipeline.yaml`` for every pipeline under ``out_dir`` (``pipelines/`` puts
    each beside its source); returns the paths. With ``image_digest`` (``sha256:...``) every
    step names the project image by that digest instead of the version tag: what a cluster
    that admits only pinned images needs."""
    pinned = None
    if image_digest is not None:
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", image_digest):
            raise OblivioError(f"--image-digest {image_digest!r}: expected sha256: and 64 hex "
                               "digits")
        pinned = f"{IMAGE.rsplit(':', 1)[0]}@{image_digest}"
    written = []
    for name, pipeline in PIPELINES.items():
        path = Path(out_dir) / name / "pipeline.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        compiler.Compiler().compile(pipeline, str(path))
        if pinned is not None:
            path.write_text(retarget(path.read_text(), pinned))
        written.append(path)
    return written
