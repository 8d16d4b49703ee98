from pathlib import Path

import pytest
import torch
from kfp import dsl

import oblivio
from oblivio.data import open_dataset
from oblivio.errors import OblivioError
from oblivio.evaluation.outputs import collect_outputs, gather_shards
from oblivio_pipeline.components import predict_outputs


def _predict(trained_rgb, path: Path, shard: int, shards: int,
             unlearned: Path | None = None) -> tuple[dsl.Artifact, dsl.Artifact]:
    """The parent's and the unlearned model's outputs of one shard (the parent twice when no
    unlearned model is given)."""
    data, model_dir = trained_rgb
    original, other = dsl.Artifact(uri=str(path)), dsl.Artifact(uri=f"{path}-unlearned")
    predict_outputs.python_func(original=dsl.Model(uri=str(model_dir)),
                                unlearned=dsl.Model(uri=str(unlearned or model_dir)),
                                dataset_uri=str(data), shard=shard, shards=shards,
                                device="cpu", original_outputs=original,
                                unlearned_outputs=other)
    return original, other


def test_gathered_shards_are_the_whole_split(trained_rgb, tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    model = oblivio.load_model(model_dir)
    train = open_dataset(data).split("train")
    parts = [_predict(trained_rgb, tmp_path / f"p{i}", i, 3)[0] for i in range(3)]
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
    assert not (tmp_path / "p").exists() and not (tmp_path / "p-unlearned").exists()


def test_each_model_gets_its_own_outputs(trained_rgb, projected: Path, tmp_path: Path) -> None:
    """The parent and the unlearned model in one task: each file holds its own model's
    outputs, as predicted alone."""
    data, model_dir = trained_rgb
    train = open_dataset(data).split("train")
    original, unlearned = _predict(trained_rgb, tmp_path / "p", 0, 1, projected)
    for part, model_path in ((original, model_dir), (unlearned, projected)):
        model = oblivio.load_model(model_path)
        gathered = gather_shards([part.path], model.config["weights_sha256"], len(train))
        whole = collect_outputs(model, train, progress=False)
        torch.testing.assert_close(gathered.logits, whole.logits, rtol=1e-4, atol=1e-4)
    assert original.metadata["rows"] == unlearned.metadata["rows"] == len(train)
