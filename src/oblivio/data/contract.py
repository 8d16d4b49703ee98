"""The dataset contract every step relies on: train/test Parquet files with
``sample_id`` (string, stable forever: deletion requests name it), ``label`` (int32) and
``image`` (PNG bytes), plus ``classes.json`` naming the classes in label order. An optional
``holdout`` split holds images from the training distribution that no model trains on: the
unseen images a method tunes towards, so the test split stays for evaluation alone."""

from __future__ import annotations

import pyarrow as pa

SPLITS = ("train", "test")
HOLDOUT = "holdout"
CLASSES_FILE = "classes.json"
SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("label", pa.int32(), nullable=False),
        pa.field("image", pa.binary(), nullable=False),
    ]
)


def split_file(split: str) -> str:
    """File name of a split inside a dataset directory."""
    return f"{split}.parquet"
