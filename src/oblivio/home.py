"""Where oblivio keeps its files on this machine (``OBLIVIO_HOME``, default ``~/.oblivio``): the
local MLflow store, the ledger's SQLite file, trained originals, batches' ids, run logs."""

from __future__ import annotations

import os
from pathlib import Path


def oblivio_home() -> Path:
    return Path(os.environ.get("OBLIVIO_HOME") or Path.home() / ".oblivio").expanduser()
