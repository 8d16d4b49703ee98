"""Kills at every point of a write (SIGKILL, and SIGTERM as Kubernetes sends it), and what the
next writer makes of what they left: a directory is whole or absent, never lost, and no
hidden debris stays behind. Real processes, killed for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from oblivio.data import open_dataset
from oblivio.data.storage import STAGE, staged_dir
from oblivio.runner import this_runner
from tests.datasets import make_idx_dir

WRITER = """
import os, signal, sys
from pathlib import Path
from oblivio.data import storage
point, target, sig = sys.argv[1], Path(sys.argv[2]), getattr(signal, sys.argv[3])
if point == "between-renames":  # a system without an atomic exchange: two renames
    storage._exchange = lambda a, b: False
    real = os.replace
    calls = []
    def replace(a, b):
        calls.append(a)
        if len(calls) == 2:
            os.kill(os.getpid(), sig)
        real(a, b)
    storage.os.replace = replace
with storage.staged_dir(target) as staged:
    Path(staged, "model.safetensors").write_text("new")
    if point == "while-writing":
        os.kill(os.getpid(), sig)
    Path(staged, "config.json").write_text("new")
"""


def write_killed(point: str, target: Path, sig: str = "SIGKILL") -> None:
    proc = subprocess.run([sys.executable, "-c", WRITER, point, str(target), sig],
                          capture_output=True)
    assert proc.returncode == -getattr(signal, sig), proc.stderr.decode()


def contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir()}


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("point", ["while-writing", "between-renames"])
def test_a_killed_writer_leaves_the_old_directory_and_the_next_clears_its_debris(
        tmp_path: Path, point: str, sig: str) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "model.safetensors").write_text("old")
    (target / "config.json").write_text("old")
    write_killed(point, target, sig)
    debris = [p for p in tmp_path.iterdir() if STAGE.match(p.name)]
    assert debris  # the staging (or the set-aside old) directory of the dead writer
    if point == "between-renames":  # the old directory is aside, nothing took its place
        assert not target.exists()
    else:
        assert contents(target) == {"model.safetensors": "old", "config.json": "old"}
    with staged_dir(tmp_path / "other") as staged:  # any next writer in the folder
        Path(staged, "x").write_text("x")
    assert contents(target) == {"model.safetensors": "old", "config.json": "old"}  # back
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_replaced_directory_is_swapped_in_one_step(tmp_path: Path) -> None:
    """With --force the old directory is exchanged for the new one atomically: there is no
    moment without ``out``, and the old one is gone after."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "config.json").write_text("old")
    with staged_dir(target) as staged:
        Path(staged, "config.json").write_text("new")
        assert (target / "config.json").read_text() == "old"  # still the old one
    assert contents(target) == {"config.json": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_long_output_name_stages_beside_it(tmp_path: Path) -> None:
    """The staging directory's name does not grow with the output's: a valid 245-byte name
    is written, not refused after the compute."""
    target = tmp_path / ("m" * 245)
    with staged_dir(target) as staged:
        Path(staged, "config.json").write_text("{}")
    assert (target / "config.json").exists()


def test_a_live_writer_s_staging_is_left_alone(tmp_path: Path) -> None:
    mine = tmp_path / f".oblivio-{os.getpid()}-abc.partial"
    mine.mkdir()
    with staged_dir(tmp_path / "out") as staged:
        Path(staged, "x").write_text("x")
    assert mine.exists()


@pytest.fixture()
def idx_dir(tmp_path: Path) -> Path:
    """Fashion-MNIST's IDX layout with 40 training and 20 test images."""
    return make_idx_dir(tmp_path / "idx")


CONVERT_KILLED = """
import os, signal, sys
from oblivio.data import fashion_mnist
def killed(*args, **kwargs):  # both splits written, classes.json not yet
    os.kill(os.getpid(), signal.SIGKILL)
fashion_mnist.write_classes = killed
fashion_mnist.convert(sys.argv[1], sys.argv[2])
"""


def test_a_killed_conversion_leaves_no_half_dataset(tmp_path: Path, idx_dir: Path) -> None:
    from oblivio_pipeline.local import ensure_dataset

    home = tmp_path / "home"
    data = home / "data" / "fashion-mnist"
    proc = subprocess.run([sys.executable, "-c", CONVERT_KILLED, str(data), str(idx_dir)],
                          capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert not data.exists()  # no folder that looks like a dataset and is not one
    assert ensure_dataset(home, str(idx_dir)) == data  # the next command converts it
    assert len(open_dataset(data).split("train")) == 40
    assert [p.name for p in data.parent.iterdir()] == ["fashion-mnist"]  # debris cleared
    # a half dataset an older oblivio left (train.parquet, no classes.json) is converted again
    (data / "classes.json").unlink()
    ensure_dataset(home, str(idx_dir))
    assert open_dataset(data).classes[0] == "T-shirt/top"


def test_an_interrupted_run_closes_its_mlflow_run_at_once(sqlite_mlflow: str) -> None:
    """SIGTERM stops ``oblivio run`` as Ctrl-C does; its MLflow runs are closed KILLED then,
    not by the next run (a live runner's runs are left to it otherwise)."""
    from oblivio.tracking.registry import client
    from oblivio.tracking.runs import RUNNER_TAG, close_abandoned_runs
    from oblivio.tracking.store import connect
    from oblivio_pipeline.local import stopped_on_signals

    run = client().create_run(connect(), tags={RUNNER_TAG: this_runner()})
    assert close_abandoned_runs() == []  # its runner lives: not abandoned
    with pytest.raises(KeyboardInterrupt), stopped_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
    close_abandoned_runs(this_runner())
    closed = client().get_run(run.info.run_id)
    assert closed.info.status == "KILLED"
    assert "was interrupted" in closed.data.tags["oblivio.failure"]


def _as_a_foreground_job() -> None:
    """SIGINT as a terminal's foreground job has it. A suite started in the background of a
    non-interactive shell (``nohup make test &``, as a CI runner may) inherits SIGINT ignored,
    and Python keeps it ignored: the command would never see the Ctrl-C under test."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _statuses(store: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(store) as db:
        return [row[0] for row in db.execute("SELECT status FROM runs")]


@pytest.mark.kfp_local
def test_ctrl_c_of_a_real_run_closes_its_runs_and_registers_nothing(
        registered: str, trained_rgb, sqlite_mlflow: str) -> None:
    """Ctrl-C in a terminal: SIGINT to the whole foreground group, the command and its kfp
    step alike, once the pipeline's first MLflow run is open. The command ends with one line,
    every MLflow run is closed KILLED (none left RUNNING for the next run to find), no model
    version is added, and the run's pipeline-root copies are erased."""
    import time

    from oblivio.tracking.registry import client

    data, _ = trained_rgb
    store = Path(sqlite_mlflow.removeprefix("sqlite:///"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "oblivio.cli", "run", "--model-name", registered, "--data",
         str(data), "--forget-classes", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=_as_a_foreground_job)
    deadline = time.monotonic() + 240
    while "RUNNING" not in _statuses(store):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err  # the shell's code for SIGINT: not a refusal (2)
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1].endswith("KILLED: interrupted"), err
    statuses = _statuses(store)
    assert "RUNNING" not in statuses and "KILLED" in statuses, statuses
    assert [str(v.version) for v in client().search_model_versions(f"name='{registered}'")] == ["1"]
    kfp_root = Path(os.environ["OBLIVIO_HOME"]) / "kfp"
    assert not kfp_root.exists() or list(kfp_root.iterdir()) == []
