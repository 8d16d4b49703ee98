"""oblivio on Kubeflow Pipelines: one lightweight component per step (``components``), the
pipeline that chains them (``pipelines``), its compiler and the local runner. The ``oblivio``
library never imports this package; each component body is one call into the library."""

import functools
import os
import signal
import threading
import time
from importlib.metadata import PackageNotFoundError, version

from kfp import dsl

try:
    __version__ = version("oblivio")
except PackageNotFoundError:  # a source checkout without an install
    __version__ = "0.0.0"

#: Every component runs in the project image, which has oblivio and kfp installed...
IMAGE = f"ghcr.io/oblivio-dev/oblivio:{__version__}"
#: ... but the control plane's (the ledger's steps, the exit handler, plan_shards), which runs
#: in the same image without torch and its CUDA libraries (images/Dockerfile, target
#: control): a fraction of the pull, for steps that run on every batch.
CONTROL_IMAGE = f"ghcr.io/oblivio-dev/oblivio-control:{__version__}"

#: The oldest Kubeflow Pipelines backend that runs the compiled pipelines: optional secret keys
#: are read from 2.15 (exit-handler final status, dsl.Collected and retries below the root DAG
#: from 2.14). tests/test_backend_conformance.py derives it from the IR.
MIN_BACKEND = "2.15"
NEEDS_BACKEND = f"Needs Kubeflow Pipelines {MIN_BACKEND} or newer."

#: The decorator of every component: the project image, where kfp is already installed (so the
#: container does not pip-install it at run time).
component = functools.partial(dsl.component, base_image=IMAGE, install_kfp_package=False)
control_component = functools.partial(dsl.component, base_image=CONTROL_IMAGE,
                                      install_kfp_package=False)


def _follow_local_runner() -> None:
    """Under ``oblivio run`` every step is a process started by the runner; a runner killed
    with SIGKILL cannot take them down, and a step left running alone could still register a
    model nobody asked for. So a step watches its runner and kills itself when it is gone."""
    from oblivio.runner import RUNNER_ENV, runner_alive

    runner = os.environ.get(RUNNER_ENV, "")
    if not runner or runner.endswith(f":{os.getpid()}"):
        return

    def watch() -> None:
        while runner_alive(runner):
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="oblivio-runner-watch", daemon=True).start()


_follow_local_runner()
