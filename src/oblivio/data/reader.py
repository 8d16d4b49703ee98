"""Read a dataset in the contract's shape from a directory or an ``s3://`` URI.

Each split is read once; its PNGs are decoded once, on first use, into a uint8 tensor
(N, C, H, W), and batches are gathered by sample id with vectorised lookups.
"""

from __future__ import annotations

import io
import json
import os
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from PIL import Image

from oblivio.data import storage
from oblivio.data.contract import CLASSES_FILE, HOLDOUT, SCHEMA, SPLITS, split_file
from oblivio.errors import OblivioError

_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_intact(data: bytes) -> bool:
    """Whether every chunk of a PNG matches its CRC. Pillow checks none of the pixel data's
    (IDAT) CRCs, so a flipped byte there decodes to wrong pixels without a word."""
    at = len(PNG_SIGNATURE)
    while at + 12 <= len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        end = at + 8 + length
        if end + 4 > len(data):
            return False
        if zlib.crc32(data[at + 4:end]) != int.from_bytes(data[end:end + 4], "big"):
            return False
        if data[at + 4:at + 8] == b"IEND":
            return True
        at = end + 4
    return False


def _decode_one(data: bytes, mode: str) -> np.ndarray:
    """One image as an array; OSError when it is not a whole, decodable image."""
    if data.startswith(PNG_SIGNATURE) and not png_intact(data):
        raise OSError("a PNG chunk does not match its CRC")
    with Image.open(io.BytesIO(data)) as img:
        if img.mode != mode:
            img = img.convert(mode)
        return np.asarray(img)


class Split:
    """One split held in memory: ids, labels and images, addressable by sample id.

    Images are decoded on first use, row by row, into one uint8 tensor (N, C, H, W) and kept:
    a step that touches 2,000 samples of 60,000 decodes 2,000.
    """

    def __init__(self, name: str, sample_ids: pa.Array, labels: torch.Tensor,
                 blobs: pa.Array, where: str) -> None:
        self.name = name
        self.sample_ids = sample_ids
        self.labels = labels
        self._blobs = blobs
        self._where = where
        if len(blobs) == 0:
            raise OblivioError(f"{where} holds no images")
        try:
            with Image.open(io.BytesIO(blobs[0].as_py())) as first:
                self._mode = "L" if first.mode in _GRAY_MODES else "RGB"
            probe = _decode_one(blobs[0].as_py(), self._mode)
        except OSError as exc:
            raise OblivioError(f"{where}: row 0 is not a decodable image ({exc})") from exc
        except Image.DecompressionBombError as exc:
            raise OblivioError(f"{where}: row 0 claims too many pixels for an image of a "
                               f"dataset ({exc})") from exc
        self._store = np.empty((len(blobs), *probe.shape), dtype=np.uint8)
        store = torch.from_numpy(self._store)
        self._images = store.unsqueeze(1) if store.ndim == 3 else store.permute(0, 3, 1, 2)
        self._decoded = torch.zeros(len(blobs), dtype=torch.bool)

    @classmethod
    def from_images(cls, name: str, sample_ids: pa.Array, labels: torch.Tensor,
                    images: torch.Tensor) -> Split:
        """A split over uint8 images (N, C, H, W) already in memory."""
        split = cls.__new__(cls)
        split.name, split.sample_ids, split.labels = name, sample_ids, labels
        split._images = images
        split._decoded = torch.ones(len(images), dtype=torch.bool)
        return split

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of every image."""
        return tuple(self._images.shape[1:])  # type: ignore[return-value]

    @property
    def images(self) -> torch.Tensor:
        """All images, uint8 (N, C, H, W), decoding whatever is not yet decoded."""
        self._decode(torch.arange(len(self)))
        return self._images

    def _decode(self, rows: torch.Tensor) -> None:
        todo = rows[~self._decoded[rows]].unique().numpy()
        if len(todo) == 0:
            return
        shape = self._store.shape[1:]

        def fill(chunk: np.ndarray) -> None:
            for i, blob in zip(chunk, self._blobs.take(pa.array(chunk)).to_pylist()):
                try:
                    img = _decode_one(blob, self._mode)
                except OSError as exc:
                    raise OblivioError(f"{self._where}: row {i} is not a decodable image "
                                       f"({exc})") from exc
                except Image.DecompressionBombError as exc:
                    raise OblivioError(f"{self._where}: row {i} claims too many pixels for an "
                                       f"image of a dataset ({exc})") from exc
                if img.shape != shape:
                    raise OblivioError(
                        f"{self._where}: row {i} has shape {img.shape}, row 0 has {shape}; "
                        "all images of a dataset must share one size")
                self._store[i] = img

        chunks = np.array_split(todo, max(1, min(len(todo) // 512, 64)))
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            list(pool.map(fill, chunks))
        self._decoded[torch.from_numpy(todo)] = True

    def ids_at(self, indices: np.ndarray | torch.Tensor) -> list[str]:
        """Sample ids of the given row indices."""
        return self.sample_ids.take(pa.array(np.asarray(indices, dtype=np.int64))).to_pylist()

    def indices(self, ids: Sequence[str] | pa.Array) -> np.ndarray:
        """Row indices of ``ids`` (int64), in the given order. Unknown ids are an error."""
        query = ids if isinstance(ids, pa.Array) else pa.array(list(ids), pa.string())
        if len(query) == 0:
            raise OblivioError(f"no sample ids given for split {self.name!r}")
        found = pc.index_in(query, value_set=self.sample_ids)
        if found.null_count:
            missing = pc.filter(query, pc.is_null(found)).to_pylist()
            shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
            raise OblivioError(
                f"{len(missing)} sample id(s) not in split {self.name!r}: {shown}"
            )
        return found.to_numpy(zero_copy_only=False).astype(np.int64)

    def batch(self, indices: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images in [0, 1] and int64 labels of the given rows."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        self._decode(idx)
        return self._images[idx].float().div_(255.0), self.labels[idx]

    def batches(self, indices: np.ndarray | torch.Tensor | None = None, batch_size: int = 512
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (images, labels) over ``indices`` (all rows when None), in order."""
        rows = np.arange(len(self)) if indices is None else np.asarray(indices)
        for start in range(0, len(rows), batch_size):
            yield self.batch(rows[start:start + batch_size])


class Dataset:
    """A dataset directory or URI. Splits are loaded on first use and kept."""

    def __init__(self, uri: str | os.PathLike[str]) -> None:
        self.uri = os.fspath(uri)
        self._fs, self._base = storage.resolve(self.uri)
        if storage.is_local(self.uri) and not os.path.isdir(self._base):
            raise OblivioError(f"dataset {self.uri} does not exist (a dataset is a directory "
                               f"with {CLASSES_FILE}, train.parquet and test.parquet)")
        meta = self._read_classes()
        self.name: str = meta.get("name", os.path.basename(self._base.rstrip("/")))
        self.classes: list[str] = list(meta["classes"])
        self._splits: dict[str, Split] = {}
        self._holdout: bool | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_indices(self, spec: str | list[int] | list[str]) -> list[int]:
        """Sorted class indices from "3,5", "Coat,Bag" or a list of either; unknown classes
        are an error."""
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        out = set()
        for item in items:
            text = str(item).strip()
            if not text:
                continue
            if text.lstrip("-").isdigit():
                index = int(text)
                if not 0 <= index < self.num_classes:
                    raise OblivioError(f"class {index} out of range: {self.uri} has classes "
                                       f"0..{self.num_classes - 1}")
            elif text in self.classes:
                index = self.classes.index(text)
            else:
                raise OblivioError(f"unknown class {text!r}; classes of {self.uri}: "
                                   + ", ".join(self.classes))
            out.add(index)
        if not out:
            raise OblivioError("no class given")
        return sorted(out)

    def _read_classes(self) -> dict:
        path = storage.join(self._base, CLASSES_FILE)
        try:
            with self._fs.open_input_stream(path) as f:
                meta = json.loads(f.read())
        except FileNotFoundError as exc:
            raise OblivioError(f"dataset {self.uri}: missing {CLASSES_FILE}") from exc
        except json.JSONDecodeError as exc:
            raise OblivioError(f"dataset {self.uri}: {CLASSES_FILE} is not valid JSON") from exc
        except OSError as exc:
            raise OblivioError(f"dataset {self.uri}: {storage.first_line(exc)}") from exc
        classes = meta.get("classes") if isinstance(meta, dict) else meta
        if not isinstance(classes, list) or not classes or not all(
            isinstance(c, str) for c in classes
        ):
            raise OblivioError(f"dataset {self.uri}: {CLASSES_FILE} must list class names")
        return meta if isinstance(meta, dict) else {"classes": classes}

    def split(self, name: str) -> Split:
        """The named split ("train", "test" or, where there is one, "holdout"), loaded and
        validated on first use."""
        if name not in (*SPLITS, HOLDOUT):
            raise OblivioError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        if name == HOLDOUT and not self.has_holdout:
            raise OblivioError(f"dataset {self.uri} has no holdout split (`oblivio data "
                               "fashion-mnist --holdout N` makes one)")
        if name not in self._splits:
            self._splits[name] = self._load(name)
        return self._splits[name]

    @property
    def has_holdout(self) -> bool:
        """Whether the dataset keeps training-distribution images apart from every model."""
        if self._holdout is None:
            info = self._fs.get_file_info(storage.join(self._base, split_file(HOLDOUT)))
            self._holdout = info.type != pafs.FileType.NotFound
        return self._holdout

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of every image."""
        return self.split("train").image_shape

    def _load(self, name: str) -> Split:
        where = f"dataset {self.uri}, split {name}"
        path = storage.join(self._base, split_file(name))
        try:
            table = pq.read_table(path, filesystem=self._fs)
        except FileNotFoundError as exc:
            raise OblivioError(f"{where}: missing {split_file(name)}") from exc
        except (OSError, pa.ArrowInvalid) as exc:
            raise OblivioError(f"{where}: cannot read {split_file(name)}: "
                               f"{storage.first_line(exc)}") from exc
        missing = [f.name for f in SCHEMA if f.name not in table.column_names]
        if missing:
            raise OblivioError(f"{where}: missing column(s) {', '.join(missing)}")
        ids = table.column("sample_id").combine_chunks().cast(pa.string())
        if ids.null_count or pc.count_distinct(ids).as_py() != len(ids):
            raise OblivioError(f"{where}: sample_id has duplicate or empty values")
        labels = table.column("label").combine_chunks().cast(pa.int64())
        lo, hi = pc.min_max(labels).values()
        if labels.null_count or lo.as_py() < 0 or hi.as_py() >= self.num_classes:
            raise OblivioError(
                f"{where}: label out of range [0, {self.num_classes - 1}] "
                f"(found {lo.as_py()}..{hi.as_py()})"
            )
        blobs = table.column("image").combine_chunks()
        return Split(name, ids, torch.tensor(labels.to_numpy()), blobs, where)


def open_dataset(uri: str | os.PathLike[str]) -> Dataset:
    """Open a dataset directory or ``s3://`` URI in the contract's shape."""
    return Dataset(uri)
