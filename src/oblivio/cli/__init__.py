"""The ``oblivio`` command: one verb per user task, each a thin call into the library, one module
per verb group (data and models; forgetting and evidence; the pipeline; the registry; deletion
requests). Importing them registers their commands on ``app``, in the order ``--help`` lists."""

from oblivio.cli import data, forgetting, pipeline, registry, requests  # noqa: F401
from oblivio.cli.app import app

__all__ = ["app"]
