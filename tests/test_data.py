from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from oblivio.cli import app
from oblivio.data import open_dataset
from oblivio.data.fashion_mnist import CLASSES, DEFAULT_IDX_DIR, load_split
from oblivio.data.sample_ids import ids_sha256, read_sample_ids, write_sample_ids
from oblivio.data.write import write_split
from oblivio.errors import OblivioError

runner = CliRunner()


def test_conversion_round_trip_on_real_files(fm, fashion_mnist: Path) -> None:
    ds = fm
    assert ds.classes == CLASSES
    for split, count in (("train", 60_000), ("test", 10_000)):
        images, labels = load_split(DEFAULT_IDX_DIR, split)
        data = ds.split(split)
        assert len(data) == count
        assert torch.equal(data.images[:, 0], torch.from_numpy(images.copy()))
        assert torch.equal(data.labels, torch.from_numpy(labels.astype(np.int64)))
        assert data.ids_at([0, count - 1]) == [f"fashion-mnist/{split}/000000",
                                               f"fashion-mnist/{split}/{count - 1:06d}"]
    assert ds.image_shape == (1, 28, 28)
    assert pq.read_schema(fashion_mnist / "train.parquet").field("label").type == pa.int32()


def test_writing_is_deterministic(tmp_path: Path) -> None:
    images, labels = load_split(DEFAULT_IDX_DIR, "test")
    ids = [f"x/{i}" for i in range(500)]
    for name in ("a", "b"):
        write_split(str(tmp_path / name), "test", ids, labels[:500], images[:500])
    assert (tmp_path / "a/test.parquet").read_bytes() == (tmp_path / "b/test.parquet").read_bytes()


def test_reader_gathers_batches_by_sample_id(fm) -> None:
    train = fm.split("train")
    ids = ["fashion-mnist/train/000123", "fashion-mnist/train/000007",
           "fashion-mnist/train/059999"]
    rows = train.indices(ids)
    assert rows.tolist() == [123, 7, 59_999]
    x, y = train.batch(rows)
    assert x.dtype == torch.float32 and x.shape == (3, 1, 28, 28)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert torch.equal(y, train.labels[[123, 7, 59_999]])
    assert torch.equal((x * 255).round().to(torch.uint8), train.images[[123, 7, 59_999]])


def test_unknown_and_empty_ids_are_errors(fm) -> None:
    train = fm.split("train")
    with pytest.raises(OblivioError, match="1 sample id\\(s\\) not in split 'train'.*test/000001"):
        train.indices(["fashion-mnist/train/000001", "fashion-mnist/test/000001"])
    with pytest.raises(OblivioError, match="no sample ids"):
        train.indices([])


def test_any_contract_dataset_works_rgb(rgb_dataset: Path) -> None:
    ds = open_dataset(rgb_dataset)
    assert ds.num_classes == 3 and ds.image_shape == (3, 16, 16)
    x, y = ds.split("test").batch(np.arange(4))
    assert x.shape == (4, 3, 16, 16) and y.tolist() == [0, 0, 0, 0]


def test_class_indices_by_number_or_name(rgb_dataset: Path) -> None:
    ds = open_dataset(rgb_dataset)
    assert ds.class_indices("2,0") == [0, 2]
    assert ds.class_indices("colour1") == [1]
    with pytest.raises(OblivioError, match="class 3 out of range"):
        ds.class_indices("3")
    with pytest.raises(OblivioError, match="unknown class 'blue'"):
        ds.class_indices("blue")


def _rewrite(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path)


def test_missing_split_file(rgb_dataset: Path) -> None:
    (rgb_dataset / "test.parquet").unlink()
    with pytest.raises(OblivioError, match="missing test.parquet"):
        open_dataset(rgb_dataset).split("test")


def test_missing_column(rgb_dataset: Path) -> None:
    path = rgb_dataset / "train.parquet"
    _rewrite(path, pq.read_table(path).drop_columns(["label"]))
    with pytest.raises(OblivioError, match="missing column\\(s\\) label"):
        open_dataset(rgb_dataset).split("train")


def test_duplicate_sample_ids(rgb_dataset: Path) -> None:
    path = rgb_dataset / "train.parquet"
    table = pq.read_table(path)
    ids = table.column("sample_id").to_pylist()
    ids[5] = ids[4]
    _rewrite(path, table.set_column(0, "sample_id", pa.array(ids)))
    with pytest.raises(OblivioError, match="duplicate"):
        open_dataset(rgb_dataset).split("train")


def test_label_out_of_range(rgb_dataset: Path) -> None:
    path = rgb_dataset / "train.parquet"
    table = pq.read_table(path)
    labels = table.column("label").to_numpy().copy()
    labels[0] = 3
    _rewrite(path, table.set_column(1, "label", pa.array(labels, pa.int32())))
    with pytest.raises(OblivioError, match="label out of range \\[0, 2\\]"):
        open_dataset(rgb_dataset).split("train")


def test_missing_or_bad_classes_json(rgb_dataset: Path) -> None:
    (rgb_dataset / "classes.json").write_text("{not json")
    with pytest.raises(OblivioError, match="not valid JSON"):
        open_dataset(rgb_dataset)
    (rgb_dataset / "classes.json").unlink()
    with pytest.raises(OblivioError, match="missing classes.json"):
        open_dataset(rgb_dataset)


def test_mixed_image_sizes_rejected(tmp_path: Path) -> None:
    images = np.zeros((2, 8, 8), np.uint8)
    write_split(str(tmp_path), "train", ["a", "b"], np.array([0, 1]), images)
    other = pq.read_table(tmp_path / "train.parquet")
    write_split(str(tmp_path / "b"), "train", ["c"], np.array([0]), np.zeros((1, 9, 9), np.uint8))
    mixed = pa.concat_tables([other, pq.read_table(tmp_path / "b/train.parquet")])
    _rewrite(tmp_path / "train.parquet", mixed)
    (tmp_path / "classes.json").write_text(json.dumps({"classes": ["a", "b"]}))
    split = open_dataset(tmp_path).split("train")  # decoding is lazy: the error comes on use
    split.batch([0, 1])
    with pytest.raises(OblivioError, match="row 2 has shape"):
        split.batch([2])


def test_sample_id_files(tmp_path: Path) -> None:
    (tmp_path / "ids.txt").write_text("b\na\n\n")
    assert read_sample_ids(tmp_path / "ids.txt").to_pylist() == ["b", "a"]
    write_sample_ids(tmp_path / "ids.parquet", ["a", "b"])
    assert read_sample_ids(tmp_path / "ids.parquet").to_pylist() == ["a", "b"]
    assert ids_sha256(["b", "a"]) == ids_sha256(["a", "b"])
    (tmp_path / "dup.txt").write_text("a\na\n")
    with pytest.raises(OblivioError, match="duplicate"):
        read_sample_ids(tmp_path / "dup.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(OblivioError, match="names no sample ids"):
        read_sample_ids(tmp_path / "empty.txt")


def test_an_ids_file_with_a_byte_order_mark_reads_its_first_id(tmp_path: Path) -> None:
    """Some editors start UTF-8 text with a byte-order mark; it is no part of the first id."""
    (tmp_path / "ids.txt").write_bytes("\ufefftrain-1\ntrain-2\n".encode())
    assert read_sample_ids(tmp_path / "ids.txt").to_pylist() == ["train-1", "train-2"]


def test_a_holdout_split_is_kept_apart_and_serves_as_the_reference(tmp_path: Path) -> None:
    """`--holdout N`: N training images move to a holdout split (their ids stay foreign to
    every deletion request), classes.json records how, the check covers it, and match and
    evaluate then use it and the whole test split; without one they split the test split in
    two disjoint halves."""
    from oblivio.data.checks import check_dataset
    from oblivio.data.unseen import evaluation_rows, reference_images
    from tests.datasets import make_idx_dir

    idx = make_idx_dir(tmp_path / "idx")
    result = runner.invoke(app, ["data", "fashion-mnist", "--out", str(tmp_path / "d"),
                                 "--idx-dir", str(idx), "--holdout", "10"])
    assert result.exit_code == 0, result.output
    ds = open_dataset(tmp_path / "d")
    train, holdout = ds.split("train"), ds.split("holdout")
    assert (len(train), len(holdout)) == (30, 10)
    assert not set(holdout.sample_ids.to_pylist()) & set(train.sample_ids.to_pylist())
    assert all(i.startswith("fashion-mnist/train/") for i in holdout.sample_ids.to_pylist())
    meta = json.loads((tmp_path / "d" / "classes.json").read_text())
    assert meta["holdout"] == {"count": 10, "from": "train", "seed": 0}
    assert check_dataset(ds)["splits"]["holdout"]["rows"] == 10
    with pytest.raises(OblivioError, match="not in split .train."):
        train.indices(holdout.sample_ids.to_pylist()[:1])  # a request cannot name it
    split, rows, used = reference_images(ds)
    assert split.name == "holdout" and len(rows) == 10 and used.startswith("holdout split")
    assert len(evaluation_rows(ds)[0]) == 20

    result = runner.invoke(app, ["data", "fashion-mnist", "--out", str(tmp_path / "e"),
                                 "--idx-dir", str(idx), "--holdout", "40"])
    assert result.exit_code == 2 and not (tmp_path / "e").exists()
    assert result.stderr.strip() == ("error: --holdout must leave training images: "
                                     "0 <= N < 40, got 40")
    runner.invoke(app, ["data", "fashion-mnist", "--out", str(tmp_path / "e"), "--idx-dir",
                        str(idx)])
    plain = open_dataset(tmp_path / "e")
    assert not plain.has_holdout
    _, reference, _ = reference_images(plain)
    evaluation, _ = evaluation_rows(plain)
    assert not set(reference) & set(evaluation)
    assert sorted([*reference, *evaluation]) == list(range(20))
    with pytest.raises(OblivioError, match="no holdout split"):
        plain.split("holdout")
