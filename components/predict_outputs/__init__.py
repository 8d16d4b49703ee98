"""predict_outputs: see README.md."""

from oblivio_pipeline.components.predict_outputs.component import predict_outputs

__all__ = ["predict_outputs"]
