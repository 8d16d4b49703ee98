"""The suite's own scheduling, as `make test` runs it (pytest-xdist, ``--dist loadgroup``): the
tests of one ``xdist_group`` share a worker, so a module fixture that costs minutes (a pipeline
run, a pool of retrains) is built once. With pytest 9.2 and pytest-xdist 3.8 the marks were
ignored without a word (pytest-xdist issue 1386) and those fixtures were built on both workers;
this fails when an upgrade brings that back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = '''
import os
import pytest

def log(what):
    with open(os.environ["PROBE_LOG"], "a") as out:
        print(what, os.environ["PYTEST_XDIST_WORKER"], file=out)

@pytest.fixture(scope="module")
def costly():
    log("built")

@pytest.mark.xdist_group("costly")
def test_first(costly):
    log("first")

@pytest.mark.xdist_group("costly")
def test_second(costly):
    log("second")

@pytest.mark.parametrize("i", range(6))
def test_other(i):
    pass
'''


def test_a_group_runs_on_one_worker_and_builds_its_fixture_once(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE)
    log = tmp_path / "log"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup",
         "-p", "no:cacheprovider", "-c", "/dev/null", "--rootdir", str(tmp_path),
         str(tmp_path / "test_probe.py")],
        cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PROBE_LOG": str(log)},
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]
    lines = [line.split() for line in log.read_text().splitlines()]
    assert sorted(what for what, _ in lines) == ["built", "first", "second"]
    assert len({worker for _, worker in lines}) == 1, lines
