"""A run killed with SIGKILL: its steps go down with it, its MLflow run does not stay RUNNING
forever, and a re-run registers exactly one new version. Real processes, a real SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from oblivio.deletion.promotion import register_champion
from oblivio.runner import runner_alive
from oblivio.tracking.registry import Lineage, client, lineage
from oblivio.tracking.runs import JOB_TAG
from oblivio.tracking.store import connect

pytestmark = pytest.mark.kfp_local  # pipelines under kfp.local: make test-fast leaves them out

#: ``oblivio run`` as a process, with sample counts that fit the small test dataset.
RUN = ("import sys; from oblivio_pipeline.local import run_local; "
       "run_local('tiny', '1', sys.argv[1], device='cpu', retain_per_class=20, forget_samples=30,"
       " val_per_class=10, val_forget_samples=20, max_forget_acc=1.0, max_retain_drop=1.0,"
       " min_mia_efficacy=0.0, max_reestimated_forget_acc=1.0)")


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid``, with its command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                try:
                    found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(
                        b"\0", b" ").decode()
                except OSError:
                    found[child] = ""
                frontier.append(child)
    return found


def gone(pid: int) -> bool:
    return not runner_alive(f"{os.uname().nodename}:{pid}")


def test_a_killed_run_takes_its_steps_down_and_is_closed_by_the_next(
        trained_rgb, sqlite_mlflow: str, tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    with mlflow.start_run(experiment_id=connect()):
        register_champion(model_dir, "tiny", Lineage("trained"))
    command = [sys.executable, "-c", RUN, str(data)]
    proc = subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # until a step after the run was opened
            steps = descendants(proc.pid)
            if any("capture_activations" in line for line in steps.values()):
                break
            assert proc.poll() is None, "the run ended before the capture step"
            time.sleep(0.2)
        else:
            raise AssertionError("no capture step within 240 s")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 15
        while not all(gone(pid) for pid in steps) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {pid: line[:80] for pid, line in steps.items() if not gone(pid)}
        assert not left, f"steps outlived their killed runner: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
    [abandoned] = client().search_runs([connect()], f"tags.`{JOB_TAG}` != ''")
    assert abandoned.info.status == "RUNNING"  # what a kill leaves behind
    assert [r["version"] for r in lineage("tiny")] == ["1"]

    result = subprocess.run(command, env=os.environ.copy(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "KILLED: the oblivio run that ran it is gone" in result.stderr
    closed = client().get_run(abandoned.info.run_id)
    assert closed.info.status == "KILLED"
    assert "it was killed" in closed.data.tags["oblivio.failure"]
    rows = lineage("tiny")
    assert [r["version"] for r in rows] == ["1", "2"]  # one version, from the re-run
    assert rows[1]["aliases"] == ["candidate", "champion"]
