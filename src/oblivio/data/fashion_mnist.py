"""Convert the Fashion-MNIST IDX files (Debian's ``dataset-fashion-mnist`` package) into the
dataset contract. Sample ids are the split and the row index in the IDX file, so they are stable
across conversions and machines."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from oblivio.data.checks import check_dataset
from oblivio.data.reader import Dataset
from oblivio.data.storage import staged_dir
from oblivio.data.write import write_classes, write_split
from oblivio.errors import OblivioError

DEFAULT_IDX_DIR = "/usr/share/datasets/fashion-mnist"
NAME = "fashion-mnist"
CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049


def _open_idx(idx_dir: Path, stem: str) -> bytes:
    for name in (stem + ".gz", stem):
        path = idx_dir / name
        if path.exists():
            opener = gzip.open if name.endswith(".gz") else open
            try:
                with opener(path, "rb") as f:
                    return f.read()
            except (OSError, EOFError) as exc:
                raise OblivioError(f"cannot read {path}: {exc}") from exc
    raise OblivioError(
        f"missing {stem}(.gz) in {idx_dir}: install the Debian package dataset-fashion-mnist "
        "or pass --idx-dir"
    )


def read_idx(raw: bytes, magic: int, source: str) -> np.ndarray:
    """Parse an IDX byte string (big-endian header, uint8 payload) into an array."""
    if len(raw) < 8 or int.from_bytes(raw[:4], "big") != magic:
        raise OblivioError(f"{source} is not an IDX file with magic number {magic}")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise OblivioError(f"{source}: header says {expected} bytes, file has {len(raw) - offset}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def load_split(idx_dir: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) and labels (N,) of one split, as uint8 arrays."""
    images_stem, labels_stem = _FILES[split]
    directory = Path(idx_dir)
    images = read_idx(_open_idx(directory, images_stem), _IMAGES_MAGIC, images_stem)
    labels = read_idx(_open_idx(directory, labels_stem), _LABELS_MAGIC, labels_stem)
    if len(images) != len(labels):
        raise OblivioError(f"{split}: {len(images)} images but {len(labels)} labels")
    return images, labels


def sample_ids(split: str, count: int) -> list[str]:
    """Stable ids: ``fashion-mnist/<split>/<row>``."""
    return [f"{NAME}/{split}/{i:06d}" for i in range(count)]


def convert(out_dir: str, idx_dir: str | os.PathLike[str] = DEFAULT_IDX_DIR,
            holdout: int = 0, seed: int = 0) -> dict[str, int]:
    """Write ``train.parquet``, ``test.parquet`` and ``classes.json`` to ``out_dir``, whole or
    not at all (``storage.staged_dir``: a kill or a full disk leaves no half dataset that
    later commands would trip over); returns the row count of each split. ``holdout`` > 0
    moves that many training images, drawn with ``seed``, into a ``holdout`` split (their ids
    stay those of their IDX rows, so they can never be named by a deletion request)."""
    loaded = {split: (images, labels, sample_ids(split, len(labels)))
              for split, (images, labels) in ((s, load_split(idx_dir, s)) for s in _FILES)}
    for split, (_, labels, _) in loaded.items():
        if labels.max(initial=0) >= len(CLASSES):
            raise OblivioError(f"{split}: label {labels.max()} out of range for 10 classes")
    images, labels, ids = loaded["train"]
    if not 0 <= holdout < len(labels):
        raise OblivioError(f"--holdout must leave training images: 0 <= N < {len(labels)}, "
                           f"got {holdout}")
    meta: dict = {}
    if holdout:
        apart = np.zeros(len(labels), dtype=bool)
        apart[np.random.default_rng(seed).permutation(len(labels))[:holdout]] = True
        ids = np.asarray(ids)
        loaded["train"] = (images[~apart], labels[~apart], ids[~apart].tolist())
        loaded["holdout"] = (images[apart], labels[apart], ids[apart].tolist())
        meta["holdout"] = {"count": holdout, "from": "train", "seed": seed}
    counts = {}
    with staged_dir(out_dir) as staged:
        for split, (images, labels, ids) in loaded.items():
            write_split(staged, split, ids, labels, images)
            counts[split] = len(labels)
        write_classes(staged, NAME, CLASSES, **meta)
        check_dataset(Dataset(staged))  # recorded: later steps need not decode it all again
    return counts
