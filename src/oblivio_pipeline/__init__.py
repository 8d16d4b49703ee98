"""oblivio on Kubeflow Pipelines: one lightweight component per step (``components``), the
pipeline that chains them (``pipelines``), its compiler and the local runner. The ``oblivio``
library never imports this package; each component body is one call into the library."""

import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

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

F = TypeVar("F", bound=Callable[..., Any])


class _FrameNames:
    """``inspect`` as kfp's pipeline_task module sees it while a pipeline is built, but with a
    ``stack()`` that only names each frame's function (what kfp reads of it)."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    @staticmethod
    def stack(context: int = 1) -> list[tuple]:
        frame, frames = sys._getframe(1), []
        while frame is not None:
            frames.append((frame, None, None, frame.f_code.co_name))
            frame = frame.f_back
        return frames


def builds_quickly(make: F) -> F:
    """Build a pipeline without kfp's setters calling ``inspect.stack()``. kfp 2.17's
    ``PipelineTask`` setters (``set_cpu_request``, ``add_node_selector_constraint``, ...) call
    it only to name their caller in an error message, and it reads every frame's source,
    scanning ``sys.modules`` once per frame: the unlearning pipeline's 78 calls took 6 s in a
    fresh process and over a minute inside the test suite, once torch, MLflow and the tests had
    loaded thousands of modules, on every ``oblivio run``. The error message is unchanged."""
    import kfp.dsl.pipeline_task as tasks

    @functools.wraps(make)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        real = tasks.inspect
        tasks.inspect = _FrameNames(real)
        try:
            return make(*args, **kwargs)
        finally:
            tasks.inspect = real
    return wrapper  # type: ignore[return-value]


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
