"""Which local process runs a pipeline: ``oblivio run`` names itself ``<host>:<pid>`` in
``OBLIVIO_RUNNER`` for the steps it starts, so a step can follow its runner and a later run can
tell that an earlier one was killed."""

from __future__ import annotations

import os
import socket
from pathlib import Path

RUNNER_ENV = "OBLIVIO_RUNNER"


def this_runner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def runner_alive(runner: str) -> bool:
    """Whether ``<host>:<pid>`` names a live process (on another host: assumed alive)."""
    host, _, pid = runner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    return pid_alive(int(pid))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host lives (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
