
from kfp import dsl

from oblivio_pipeline import component


@component
def merge_statistics(parts: dsl.Input[list[dsl.Artifact]],
                     statistics: dsl.Output[dsl.Artifact]) -> None:
    """Add up the statistics of a sample list's shards (a ParallelFor's dsl.Collected outputs)
    into those of the whole list: Gram matrices add, factors stack in shard order.

    Args:
        parts: The shards' statistics from capture_activations, in shard order.
        statistics: Per-layer statistics of the whole list (safetensors).
    """
    from oblivio.steps import merge_statistics_step

    summary = merge_statistics_step([p.path for p in parts], statistics.path)
    statistics.metadata.update({"set": parts[0].metadata.get("set", ""), **summary})
