import pytest

from oblivio.errors import OblivioError
from oblivio_pipeline.components import plan_shards


def test_lists_every_shard_and_refuses_a_count_out_of_range() -> None:
    assert plan_shards.python_func(shards=1) == [0]
    assert plan_shards.python_func(shards=4) == [0, 1, 2, 3]
    for bad in (0, -2, 257):
        with pytest.raises(OblivioError, match=f"shards must be between 1 and 256, got {bad}"):
            plan_shards.python_func(shards=bad)
