"""Compile the pipelines to the YAML committed under ``pipelines/`` (deterministic output, so a
test can tell when the committed file is stale)."""

from __future__ import annotations

from pathlib import Path

from kfp import compiler

from oblivio_pipeline.pipelines.class_forgetting import class_forgetting

PIPELINES = {"class_forgetting": class_forgetting}


def compile_pipelines(out_dir: str | Path) -> list[Path]:
    """Write ``<name>.yaml`` for every pipeline into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, pipeline in PIPELINES.items():
        path = out_dir / f"{name}.yaml"
        compiler.Compiler().compile(pipeline, str(path))
        written.append(path)
    return written
