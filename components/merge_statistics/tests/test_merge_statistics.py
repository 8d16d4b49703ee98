from pathlib import Path

import pytest
import torch
from kfp import dsl

from oblivio.errors import OblivioError
from oblivio.unlearn.classes.statistics import load_statistics
from oblivio_pipeline.components import capture_activations, merge_statistics


def _capture(trained_rgb, samples: Path, path: Path, shard: int, shards: int) -> dsl.Artifact:
    data, model_dir = trained_rgb
    out = dsl.Artifact(uri=str(path))
    capture_activations.python_func(model=dsl.Model(uri=str(model_dir)), dataset_uri=str(data),
                                    samples=dsl.Dataset(uri=str(samples)), which="retain",
                                    shard=shard, shards=shards, device="cpu", statistics=out)
    return out


def test_shards_add_up_to_the_whole_list(trained_rgb, class_samples: Path,
                                         tmp_path: Path) -> None:
    whole = load_statistics(_capture(trained_rgb, class_samples, tmp_path / "all", 0, 1).path)
    parts = [_capture(trained_rgb, class_samples, tmp_path / f"p{i}", i, 3) for i in range(3)]
    assert sum(p.metadata["samples"] for p in parts) == whole.samples
    merged_art = dsl.Artifact(uri=str(tmp_path / "merged"))
    merge_statistics.python_func(parts=parts, statistics=merged_art)
    merged = load_statistics(merged_art.path)
    assert merged.samples == whole.samples and list(merged.layers) == list(whole.layers)
    for name, stat in whole.layers.items():
        assert merged.layers[name].count == stat.count
        torch.testing.assert_close(merged.layers[name].as_gram(), stat.as_gram(),
                                   rtol=1e-5, atol=1e-6)
    assert merged_art.metadata["parts"] == 3 and merged_art.metadata["set"] == "retain"


def test_a_part_that_is_not_statistics_is_refused(trained_rgb, class_samples: Path,
                                                  tmp_path: Path) -> None:
    mine = _capture(trained_rgb, class_samples, tmp_path / "p0", 0, 2)
    (tmp_path / "p1").write_bytes(b"not safetensors")
    with pytest.raises(OblivioError, match="is not a oblivio-stats/1 file"):
        merge_statistics.python_func(parts=[mine, dsl.Artifact(uri=str(tmp_path / "p1"))],
                                     statistics=dsl.Artifact(uri=str(tmp_path / "m")))
    assert not (tmp_path / "m").exists()
