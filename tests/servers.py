"""Real servers on loopback for tests: each one is started here and stopped when its block ends.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def start_mlflow_server(root: Path, artifacts: str | None = None,
                        env: dict[str, str] | None = None,
                        extra_args: list[str] | None = None) -> Iterator[str]:
    """``mlflow server`` (SQLite backend; artifacts under ``root``, or at ``artifacts``, e.g.
    an s3:// URI, proxied by the server; ``env`` adds to its environment, ``extra_args`` to its
    options); yields its URL. Without MLflow's server jobs, as the chart runs it: their seven
    Huey consumers would each import MLflow at every start, on the cores the tests need."""
    import os

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", artifacts or str(root / "artifacts"), "--workers", "1",
         *(extra_args or [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})})
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if requests.get(f"{uri}/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        else:
            raise RuntimeError("mlflow server did not start")
        yield uri
    finally:
        proc.terminate()
        proc.wait(10)


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


def postgres_bin() -> Path | None:
    """The directory of PostgreSQL's server binaries (Debian's package), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@contextlib.contextmanager
def start_postgres() -> Iterator[str]:
    """A real PostgreSQL server of its own (initdb + pg_ctl, trust auth, loopback only, in a
    temporary directory removed afterwards); yields a SQLAlchemy URL. As root the server runs
    as the package's ``postgres`` user, since PostgreSQL refuses to run as root (and its
    directory is then outside pytest's, which only root may enter)."""
    import os
    import shutil
    import tempfile

    binaries = postgres_bin()
    if binaries is None:
        raise RuntimeError("PostgreSQL is not installed: run `make test` (it installs it)")
    root = Path(tempfile.mkdtemp(prefix="oblivio-postgres-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    ctl = [*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-w", "-l",
           str(root / "postgres.log")]
    try:
        subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(data), "-U", "oblivio",
                        "-A", "trust", "--no-sync"], check=True, capture_output=True)
        subprocess.run([*ctl, "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} "
                        "-c fsync=off", "start"], check=True, capture_output=True)
        yield f"postgresql+psycopg://oblivio@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
