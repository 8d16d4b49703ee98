"""Copies oblivio makes of a model's weights do not outlive their use: loading a registered
version, resolving a parent for a run and the audit by class name download into a temporary
directory that is removed, so a purge is not undone by a copy left in /tmp."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import oblivio
from oblivio.cli import app


def test_loading_a_registered_version_leaves_no_copy(
        registered: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    model = oblivio.load_model(f"models:/{registered}@champion")
    assert model is not None
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    audit = CliRunner().invoke(app, ["audit", "--model-name", registered, "--class", "colour1"])
    assert "no request for class 1" in audit.stderr  # the name was read from the champion
    assert [p.name for p in scratch.iterdir()] == []
    # the control: the download itself does land there while the block runs
    from oblivio.tracking.registry import downloaded

    with downloaded(f"models:/{registered}@champion") as model_dir:
        assert (model_dir / "model.safetensors").exists()
        assert model_dir.is_relative_to(scratch)
    assert [p.name for p in scratch.iterdir()] == []
