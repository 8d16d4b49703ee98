"""Compile each pipeline to the ``pipeline.yaml`` committed beside its ``pipeline.py``
(deterministic output, so a test can tell when the committed file is stale)."""

from __future__ import annotations

import re
from pathlib import Path

from kfp import compiler

from oblivio.errors import OblivioError
from oblivio_pipeline import CONTROL_IMAGE, IMAGE
from oblivio_pipeline.pipelines.oblivio_deletion_batch import deletion_batch_pipeline
from oblivio_pipeline.pipelines.oblivio_unlearning import unlearning_pipeline

#: Folder name under pipelines/ -> the pipeline.
PIPELINES = {"oblivio_unlearning": unlearning_pipeline,
             "oblivio_deletion_batch": deletion_batch_pipeline}


_IMAGE_RE = r"[a-z0-9][a-z0-9._/:-]*(:[\w.-]+|@sha256:[0-9a-f]{64})"


def retarget(text: str, image: str | None = None, control_image: str | None = None) -> str:
    """A compiled pipeline whose steps run ``image`` instead of the project image and
    ``control_image`` instead of the control-plane image (each ``repo:tag`` or
    ``repo@sha256:...``; None leaves that one as compiled)."""
    for option, new, old in (("--image", image, IMAGE),
                             ("--control-image", control_image, CONTROL_IMAGE)):
        if new is None:
            continue
        if not re.fullmatch(_IMAGE_RE, new):
            raise OblivioError(f"{option} {new!r}: expected registry/repository:tag or "
                               "registry/repository@sha256:<64 hex digits>")
        if f"image: {old}\n" not in text:
            raise OblivioError(f"no step of the pipeline runs {old}: nothing to point at {new}")
        text = text.replace(f"image: {old}\n", f"image: {new}\n")
    return text


def _pinned(image: str, digest: str | None, option: str) -> str | None:
    if digest is None:
        return None
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise OblivioError(f"{option} {digest!r}: expected sha256: and 64 hex digits")
    return f"{image.rsplit(':', 1)[0]}@{digest}"


def compile_pipelines(out_dir: str | Path, image_digest: str | None = None,
                      control_digest: str | None = None) -> list[Path]:
    """Write ``<name>/pipeline.yaml`` for every pipeline under ``out_dir`` (``pipelines/`` puts
    each beside its source); returns the paths. With ``image_digest`` (``control_digest``,
    ``sha256:...``) the steps name the project (control-plane) image by that digest instead of
    the version tag: what a cluster that admits only pinned images needs."""
    image = _pinned(IMAGE, image_digest, "--image-digest")
    control = _pinned(CONTROL_IMAGE, control_digest, "--control-digest")
    written = []
    for name, pipeline in PIPELINES.items():
        path = Path(out_dir) / name / "pipeline.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        compiler.Compiler().compile(pipeline, str(path))
        if image or control:
            path.write_text(retarget(path.read_text(), image, control))
        written.append(path)
    return written
