"""Read lists of sample ids (deletion requests, sample sets) from text or Parquet files."""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from oblivio.data import storage
from oblivio.errors import OblivioError

if TYPE_CHECKING:
    import numpy as np

    from oblivio.data.reader import Dataset, Split


def read_sample_ids(uri: str | os.PathLike[str]) -> pa.Array:
    """Sample ids from a Parquet file (column ``sample_id``) or a text file (one id a line).

    Empty lists and duplicate ids are errors: a deletion request must name each image once.
    """
    text = os.fspath(uri)
    if text.endswith(".parquet"):
        fs, path = storage.resolve(text)
        try:
            table = pq.read_table(path, filesystem=fs, columns=["sample_id"])
        except FileNotFoundError as exc:
            raise OblivioError(f"file not found: {text}") from exc
        except (KeyError, pa.ArrowInvalid, OSError) as exc:
            raise OblivioError(f"{text}: no readable sample_id column "
                               f"({storage.first_line(exc)})") from exc
        ids = table.column("sample_id").combine_chunks().cast(pa.string())
    else:
        try:
            # utf-8-sig: a byte-order mark (what some editors write first) is no part of the
            # first id
            lines = storage.read_bytes(text).decode("utf-8-sig", errors="strict").splitlines()
        except UnicodeDecodeError:
            raise OblivioError(f"{text} is neither Parquet (.parquet) nor UTF-8 text with one "
                               "sample id a line") from None
        ids = pa.array([line.strip() for line in lines if line.strip()], pa.string())
    if len(ids) == 0:
        raise OblivioError(f"{text} names no sample ids")
    if ids.null_count or pc.count_distinct(ids).as_py() != len(ids):
        raise OblivioError(f"{text} has duplicate or empty sample ids")
    return ids


def write_sample_ids(uri: str | os.PathLike[str], ids: pa.Array | list[str]) -> None:
    """Write sample ids as a one-column Parquet file (whole or not at all)."""
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"sample_id": pa.array(ids, pa.string())}), sink)
    storage.write_bytes(uri, sink.getvalue().to_pybytes())


def ids_sha256(ids: pa.Array | list[str]) -> str:
    """SHA-256 of the sorted ids, one per line: names a deletion request without listing it."""
    values = sorted(ids.to_pylist() if isinstance(ids, pa.Array) else ids)
    return hashlib.sha256("".join(f"{v}\n" for v in values).encode()).hexdigest()


def train_rows_of(dataset: Dataset, train: Split, ids: pa.Array, where: str) -> np.ndarray:
    """Row indices of training ids; ids of the test split get their own error, since a
    deletion request can only name images the model was trained on."""
    unknown = pc.invert(pc.is_in(ids, value_set=train.sample_ids))
    if pc.any(unknown).as_py():
        missing = pc.filter(ids, unknown)
        in_test = pc.filter(missing, pc.is_in(missing, value_set=dataset.split("test").sample_ids))
        if len(in_test):
            raise OblivioError(f"{where} names test-split sample ids (e.g. {in_test[0]}); a "
                               "deletion request can only name training images")
    return train.indices(ids)  # unknown ids: one error that lists them
