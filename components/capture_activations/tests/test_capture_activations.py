from pathlib import Path

from kfp import dsl

from oblivio.unlearn.statistics import load_statistics
from oblivio_pipeline.components import capture_activations


def test_captures_the_named_list(trained_rgb, class_samples: Path, tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    stats = dsl.Artifact(uri=str(tmp_path / "forget.safetensors"))
    capture_activations.python_func(model=dsl.Model(uri=str(model_dir)), dataset_uri=str(data),
                                    samples=dsl.Dataset(uri=str(class_samples)), which="forget",
                                    shard=0, shards=1, device="cpu", statistics=stats)
    loaded = load_statistics(tmp_path / "forget.safetensors")
    assert loaded.samples == 20 and stats.metadata["samples"] == 20
    assert stats.metadata["set"] == "forget"
    assert stats.metadata["layers"] == len(loaded.layers) > 10  # every conv and the head


def test_captures_one_shard_of_the_list(trained_rgb, class_samples: Path, tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    stats = dsl.Artifact(uri=str(tmp_path / "forget-1.safetensors"))
    capture_activations.python_func(model=dsl.Model(uri=str(model_dir)), dataset_uri=str(data),
                                    samples=dsl.Dataset(uri=str(class_samples)), which="forget",
                                    shard=1, shards=3, device="cpu", statistics=stats)
    assert load_statistics(stats.path).samples == 6 == stats.metadata["samples"]  # 7, 6, 7
    assert (stats.metadata["shard"], stats.metadata["shards"]) == (1, 3)
