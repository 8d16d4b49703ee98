"""A full disk and a read-only store, for real: a small tmpfs mounted for the test (the suite
runs as root, for whom every file is writable, so only a mount can say no). Where mounting is
not permitted the tests skip and say so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from oblivio.data.fashion_mnist import DEFAULT_IDX_DIR


@pytest.fixture()
def mounted(tmp_path: Path) -> Iterator[callable]:
    """``mount(size)``: a fresh tmpfs of that size under tmp_path; each unmounted at the end."""
    points = []

    def mount(size: str) -> Path:
        point = tmp_path / f"fs{len(points)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(point)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): a full disk and a "
                        "read-only store need one")
        points.append(point)
        return point

    yield mount
    for point in reversed(points):
        subprocess.run(["umount", "-l", str(point)], check=True)


def oblivio(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "oblivio.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300)


def one_line(proc: subprocess.CompletedProcess) -> str:
    """The one error line, last; progress bars of the work before the fault may precede it."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), proc.stderr
    assert not any(line.startswith(("error: ", "Traceback")) for line in lines[:-1]), proc.stderr
    return lines[-1]


def test_a_dataset_conversion_on_a_full_disk_leaves_nothing(mounted) -> None:
    """Fashion-MNIST's Parquet (about 35 MB) on a 4 MB disk: one line naming the full disk,
    and no folder, half dataset or staging debris left on it."""
    if not Path(DEFAULT_IDX_DIR, "train-images-idx3-ubyte.gz").exists():
        pytest.fail("Fashion-MNIST IDX files missing: run `make test` (it installs them)")
    disk = mounted("4m")
    line = one_line(oblivio("data", "fashion-mnist", "--out", str(disk / "fm")))
    assert "No space left on device" in line
    assert list(disk.iterdir()) == []


def test_a_model_write_on_a_full_disk_keeps_the_old_model(mounted, trained_rgb,
                                                          tmp_path: Path) -> None:
    """A forget whose new model does not fit: one line, and the model ``--force`` would have
    replaced is still there, whole, with no staging debris beside it."""
    data, model = trained_rgb
    disk = mounted("60m")  # room for one resnet18 (45 MB), not two
    shutil.copytree(model, disk / "out")
    before = {p.name: p.read_bytes() for p in (disk / "out").iterdir()}
    line = one_line(oblivio("forget", "--model", str(model), "--data", str(data),
                            "--classes", "1", "--out", str(disk / "out"), "--force",
                            "--alpha-r", "100", "--alpha-f", "3", "--retain-per-class", "15",
                            "--forget-samples", "20", "--val-per-class", "8",
                            "--device", "cpu"))
    assert "No space left on device" in line
    assert [p.name for p in disk.iterdir()] == ["out"]
    assert {p.name: p.read_bytes() for p in (disk / "out").iterdir()} == before


def test_a_read_only_store_refuses_writers_at_once_and_serves_queries(
        mounted, registered: str, sqlite_mlflow: str) -> None:
    """An MLflow store on a read-only mount: a command that records a run is one line at once
    (MLflow alone retries for minutes, then prints a traceback); a query reads it."""
    store = mounted("512m")
    source = Path(sqlite_mlflow.removeprefix("sqlite:///"))
    shutil.copytree(source.parent, store / "mlflow")
    subprocess.run(["mount", "-o", "remount,ro", str(store)], check=True)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow' / source.name}"}
    line = one_line(oblivio("promote", registered, "1", env=env))
    assert line.endswith("is read-only: oblivio records every run there")
    query = oblivio("lineage", registered, env=env)
    assert query.returncode == 0, query.stderr
    assert "champion" in query.stdout
    # a store that does not exist on the read-only mount is not created, by writer or query
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{store / 'new' / 'mlflow.db'}"}
    assert "is read-only" in one_line(oblivio("promote", registered, "1", env=env))
    assert "no MLflow store at" in one_line(oblivio("lineage", registered, env=env))
