"""oblivio on Kubeflow Pipelines: one lightweight component per step (``components``), the
pipeline that chains them (``pipelines``), its compiler and the local runner. The ``oblivio``
library never imports this package; each component body is one call into the library."""

import functools
from importlib.metadata import PackageNotFoundError, version

from kfp import dsl

try:
    __version__ = version("oblivio")
except PackageNotFoundError:  # a source checkout without an install
    __version__ = "0.0.0"

#: Every component runs in the project image, which has oblivio and kfp installed.
IMAGE = f"ghcr.io/oblivio-dev/oblivio:{__version__}"

#: The decorator of every component: the project image, where kfp is already installed (so the
#: container does not pip-install it at run time).
component = functools.partial(dsl.component, base_image=IMAGE, install_kfp_package=False)
