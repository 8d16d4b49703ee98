"""oblivio: make image classifiers forget deleted data without retraining from scratch."""

from oblivio.errors import OblivioError
from oblivio.models import load_model, save_model

__all__ = ["OblivioError", "load_model", "save_model"]
