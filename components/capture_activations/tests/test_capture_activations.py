from pathlib import Path

from kfp import dsl

from oblivio.unlearn.classes.statistics import load_statistics
from oblivio_pipeline.components import capture_activations


def _capture(trained_rgb, samples: Path, path: Path, shard: int, shards: int) -> dsl.Artifact:
    data, model_dir = trained_rgb
    stats = dsl.Artifact(uri=str(path))
    capture_activations.python_func(model=dsl.Model(uri=str(model_dir)), dataset_uri=str(data),
                                    samples=dsl.Dataset(uri=str(samples)), which="forget",
                                    shard=shard, shards=shards, device="cpu", statistics=stats)
    return stats


def test_captures_the_named_list(trained_rgb, class_samples: Path, tmp_path: Path) -> None:
    stats = _capture(trained_rgb, class_samples, tmp_path / "forget.safetensors", 0, 1)
    loaded = load_statistics(tmp_path / "forget.safetensors")
    assert loaded.samples == 20 and stats.metadata["samples"] == 20
    assert stats.metadata["set"] == "forget"
    assert stats.metadata["layers"] == len(loaded.layers) > 10  # every conv and the head


def test_captures_one_shard_of_the_list(trained_rgb, class_samples: Path, tmp_path: Path) -> None:
    stats = _capture(trained_rgb, class_samples, tmp_path / "forget-1.safetensors", 1, 3)
    assert load_statistics(stats.path).samples == 6 == stats.metadata["samples"]  # 7, 6, 7
    assert (stats.metadata["shard"], stats.metadata["shards"]) == (1, 3)
