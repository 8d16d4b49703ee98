
from oblivio_pipeline import control_component


@control_component
def plan_shards(shards: int) -> list[int]:
    """The shard indices that capture and evaluation fan out over (a ParallelFor's items); a
    count out of range fails here, before any work.

    Args:
        shards: How many tasks each sharded step spreads over (1 to 256).

    Returns:
        0, 1, ..., shards - 1.
    """
    from oblivio.shards import shard_plan

    return shard_plan(shards)
