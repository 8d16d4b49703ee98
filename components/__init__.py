"""One KFP v2 lightweight component per pipeline step (docs/architecture.md), each in its own
folder with its README and tests."""

from oblivio_pipeline.components.apply_contrast import apply_contrast
from oblivio_pipeline.components.apply_projection import apply_projection
from oblivio_pipeline.components.capture_activations import capture_activations
from oblivio_pipeline.components.claim_batch import claim_batch
from oblivio_pipeline.components.complete_batch import complete_batch
from oblivio_pipeline.components.compute_subspaces import compute_subspaces
from oblivio_pipeline.components.evaluate_model import evaluate_model
from oblivio_pipeline.components.merge_statistics import merge_statistics
from oblivio_pipeline.components.plan_shards import plan_shards
from oblivio_pipeline.components.predict_outputs import predict_outputs
from oblivio_pipeline.components.record_outcome import record_outcome
from oblivio_pipeline.components.register_model import register_model
from oblivio_pipeline.components.resolve_model import resolve_model
from oblivio_pipeline.components.sample_data import sample_data
from oblivio_pipeline.components.settle_batch import settle_batch
from oblivio_pipeline.components.unlearn_instances import unlearn_instances
from oblivio_pipeline.components.validate_request import validate_request

__all__ = ["apply_contrast", "apply_projection", "capture_activations", "claim_batch",
           "complete_batch", "compute_subspaces", "evaluate_model", "merge_statistics",
           "plan_shards", "predict_outputs", "record_outcome",
           "register_model", "resolve_model", "sample_data", "settle_batch",
           "unlearn_instances", "validate_request"]
