from pathlib import Path

import pytest
import torch
from kfp import dsl

import oblivio
from oblivio.data import open_dataset
from oblivio.errors import OblivioError
from oblivio.evaluation.outputs import collect_outputs, gather_shards
from oblivio_pipeline.components import predict_outputs


def _predict(trained_rgb, path: Path, shard: int, shards: int) -> dsl.Artifact:
    data, model_dir = trained_rgb
    out = dsl.Artifact(uri=str(path))
    predict_outputs.python_func(model=dsl.Model(uri=str(model_dir)), dataset_uri=str(data),
                                shard=shard, shards=shards, device="cpu", outputs=out)
    return out


def test_gathered_shards_are_the_whole_split(trained_rgb, tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    model = oblivio.load_model(model_dir)
    train = open_dataset(data).split("train")
    parts = [_predict(trained_rgb, tmp_path / f"p{i}", i, 3) for i in range(3)]
    rows = [p.metadata["rows"] for p in parts]
    assert sum(rows) == len(train) and max(rows) - min(rows) <= 1
    gathered = gather_shards([p.path for p in parts], model.config["weights_sha256"],
                             len(train))
    whole = collect_outputs(model, train, progress=False)
    torch.testing.assert_close(gathered.logits, whole.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gathered.features, whole.features, rtol=1e-4, atol=1e-4)
    assert torch.equal(gathered.labels, whole.labels)
    with pytest.raises(OblivioError, match="not every shard, in order"):
        gather_shards([parts[0].path, parts[2].path], model.config["weights_sha256"],
                      len(train))
    with pytest.raises(OblivioError, match="come from another model"):
        gather_shards([p.path for p in parts], "0" * 64, len(train))


def test_a_shard_out_of_range_writes_nothing(trained_rgb, tmp_path: Path) -> None:
    with pytest.raises(OblivioError, match="shard 3 is not one of 3 shards"):
        _predict(trained_rgb, tmp_path / "p", 3, 3)
    assert not (tmp_path / "p").exists()
