"""Write a dataset in the contract's shape from uint8 image arrays, atomically: readers never
see a half-written split."""

from __future__ import annotations

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from oblivio.data import storage
from oblivio.data.contract import CLASSES_FILE, SCHEMA, split_file
from oblivio.errors import OblivioError


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of one HxW (grayscale) or HxWx3 (RGB) uint8 image."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def encode_pngs(images: np.ndarray) -> list[bytes]:
    """PNG-encode a stack of images; zlib releases the GIL, so threads use every core."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(encode_png, images, chunksize=512))


def write_split(out_dir: str, split: str, sample_ids: list[str], labels: np.ndarray,
                images: np.ndarray) -> None:
    """Write one split (images N x H x W or N x H x W x 3, uint8) to ``out_dir``."""
    if images.dtype != np.uint8:
        raise OblivioError(f"images of split {split!r} must be uint8, got {images.dtype}")
    if not (len(sample_ids) == len(labels) == len(images)):
        raise OblivioError(f"split {split!r}: ids, labels and images differ in length")
    table = pa.Table.from_arrays(
        [
            pa.array(sample_ids, pa.string()),
            pa.array(np.asarray(labels, dtype=np.int32), pa.int32()),
            pa.array(encode_pngs(images), pa.binary()),
        ],
        schema=SCHEMA,
    )
    fs, base = storage.resolve(out_dir)
    final = storage.join(base, split_file(split))
    tmp = final + ".partial"
    try:
        fs.create_dir(base, recursive=True)
        pq.write_table(table, tmp, filesystem=fs, row_group_size=10_000, compression="zstd")
        fs.move(tmp, final)
    except OSError as exc:
        raise OblivioError(f"cannot write {out_dir}: {storage.first_line(exc)}") from None


def write_classes(out_dir: str, name: str, classes: list[str], **meta: object) -> None:
    """Write ``classes.json`` (class names in label order, and ``meta``: how the splits were
    made, such as the holdout's size and seed)."""
    payload = json.dumps({"name": name, "classes": classes, **meta}, indent=2).encode()
    storage.write_bytes(storage.join(os.fspath(out_dir), CLASSES_FILE), payload)
