"""Compile each pipeline to the ``pipeline.yaml`` committed beside its ``pipeline.py``
(deterministic output, so a test can tell when the committed file is stale)."""

from __future__ import annotations

from pathlib import Path

from kfp import compiler

from oblivio_pipeline.pipelines.oblivio_deletion_batch import deletion_batch_pipeline
from oblivio_pipeline.pipelines.oblivio_unlearning import unlearning_pipeline

#: Folder name under pipelines/ -> the pipeline.
PIPELINES = {"oblivio_unlearning": unlearning_pipeline,
             "oblivio_deletion_batch": deletion_batch_pipeline}


def compile_pipelines(out_dir: str | Path) -> list[Path]:
    """Write ``<name>/pipeline.yaml`` for every pipeline under ``out_dir`` (``pipelines/`` puts
    each beside its source); returns the paths."""
    written = []
    for name, pipeline in PIPELINES.items():
        path = Path(out_dir) / name / "pipeline.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        compiler.Compiler().compile(pipeline, str(path))
        written.append(path)
    return written
