"""The suite's own scheduling, as `make test` runs it (pytest-xdist, ``--dist loadfile``): a test
file's tests share a worker, so a module fixture that costs minutes (a pipeline run, a pool of
retrains) is made once. ``--dist loadgroup`` was used before: with pytest 9.2 and pytest-xdist
3.8 it ignores every ``xdist_group`` mark without a word (pytest-xdist issue 1386), and those
fixtures were made on both workers. This fails if an upgrade breaks loadfile the same way."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = '''
import os
import pytest

def log(what):
    with open(os.environ["PROBE_LOG"], "a") as out:
        print(what, os.environ["PYTEST_XDIST_WORKER"], file=out)

@pytest.fixture(scope="module")
def costly():
    log("built")

@pytest.mark.parametrize("i", range(4))
def test_reads_it(costly, i):
    log("test")
'''


def test_a_files_tests_run_on_one_worker_and_make_its_fixture_once(tmp_path: Path) -> None:
    dist = re.search(r"--dist (\w+)", (ROOT / "Makefile").read_text()).group(1)
    assert dist == "loadfile"  # what this probes
    for name in ("test_probe.py", "test_other.py"):
        (tmp_path / name).write_text(PROBE)
    log = tmp_path / "log"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", dist,
         "-p", "no:cacheprovider", "-c", "/dev/null", "--rootdir", str(tmp_path), "."],
        cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PROBE_LOG": str(log)},
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]
    lines = [line.split() for line in log.read_text().splitlines()]
    assert sorted(what for what, _ in lines) == ["built"] * 2 + ["test"] * 8  # once per file
    runs: dict[str, list[str]] = {}
    for what, worker in lines:
        runs.setdefault(worker, []).append(what)
    # each file's 4 tests on the worker that made its fixture (both files may share one)
    assert all(seen.count("test") == 4 * seen.count("built") for seen in runs.values()), lines


def test_files_are_handed_out_in_collection_order_pipelines_first(tmp_path: Path) -> None:
    """make test's flags hand files out in collection order, which conftest.py starts with the
    pipelines' files; xdist's default order (most tests first) puts a one-test file last."""
    flags = re.search(r"pytest -n \S+ --dist loadfile( --no-loadscope-reorder)?",
                      (ROOT / "Makefile").read_text()).group(1)
    assert flags  # what this probes
    (tmp_path / "test_a_long.py").write_text(
        "import os\n\ndef test_one():\n"
        "    open(os.environ['PROBE_LOG'], 'a').write('long\\n')\n")
    (tmp_path / "test_b_short.py").write_text(
        "import os, pytest\n\n@pytest.mark.parametrize('i', range(4))\ndef test_many(i):\n"
        "    open(os.environ['PROBE_LOG'], 'a').write('short\\n')\n")

    def first(*extra: str) -> str:
        log = tmp_path / "log"
        log.unlink(missing_ok=True)
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-n", "1", "--dist", "loadfile", *extra,
             "-p", "no:cacheprovider", "-c", "/dev/null", "--rootdir", str(tmp_path), "."],
            cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PROBE_LOG": str(log)},
            capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout[-2000:]
        return log.read_text().split()[0]

    assert first(flags.strip()) == "long"
    assert first() == "short"  # the control: xdist's own order
    # conftest.py's order: the files with a kfp_local test first, each file's tests together
    from conftest import pytest_collection_modifyitems

    class Item:
        def __init__(self, path: str, marked: bool) -> None:
            self.path, self.marked = Path(path), marked

        def get_closest_marker(self, name: str) -> object:
            return name == "kfp_local" and self.marked or None

    items = [Item("a.py", False), Item("b.py", False), Item("b.py", True), Item("c.py", False),
             Item("d.py", True)]
    pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [(i.path.name, i.marked) for i in items] == [
        ("b.py", False), ("b.py", True), ("d.py", True), ("a.py", False), ("c.py", False)]
