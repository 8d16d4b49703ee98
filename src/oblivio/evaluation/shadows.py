"""Shadow models of one training set: per-image evidence for any later deletion request,
without a pool of retrains per request (LiRA's shadow models, Carlini et al. 2022).

A pool (evaluation/pool.py) is trained for one request, so every request costs 2k trainings.
Shadows are trained once per training set: k models trained as the original was, each on a
random half, the halves drawn so that every image is in exactly k/2 of them. For any image,
the k/2 shadows that never saw it play the retrains and the other k/2 the models trained with
it, so every later request is scored as against a pool: likelihood-ratio scores, TPR at 1%
and 5% FPR against the out-shadows' own scores (each left out of the mean it is scored
against), per-example epsilon, KLoM, and the memorised part.

Their out-shadows' mean phi per image (``mean_out``) is also the one thing loss matching
lacks on memorised images: a retrain-like target for *that* image (unlearn/instances/matching.py,
``--targets shadows``).

A shadow saw half the data, a retrain all but the request: on typical images a retrain is the
more confident. The gate is therefore judged on the memorised part, where both get an image
wrong, and bench/pool.py measures how a retrain trained on everything fares against them.
Shadows hold what the training set taught them, deleted images included. A deletion batch
that used them records them as one of its copies, and once its requests are honoured
:func:`erase_images` removes the weights of every shadow that trained on them and their columns
of the outputs; what scoring needs of every other image stays.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyarrow.fs import FileType

from oblivio.data import Dataset, open_dataset
from oblivio.data.sample_ids import ids_sha256, read_sample_ids, write_sample_ids
from oblivio.data.storage import first_line, is_local, read_bytes, resolve, write_bytes
from oblivio.errors import OblivioError
from oblivio.evaluation.gates import shadow_failures
from oblivio.evaluation.pool import (
    FPRS,
    MEMORISED_GAP,
    gdp_epsilon,
    llr,
    outputs,
    part_evidence,
    spread,
)

SHADOWS_FILE = "shadows.json"
OUTPUTS_FILE = "outputs.npy"
TRAIN_IDS_FILE = "train_ids.parquet"  # the outputs' columns, in order


def membership(size: int, k: int, seed: int) -> np.ndarray:
    """(k, size) booleans: shadow m trains on image i. Each column holds exactly k/2 True."""
    return np.random.default_rng(seed).random((k, size)).argsort(0) < k // 2


def shadow_dir(shadows: str | os.PathLike[str], index: int) -> Path:
    return Path(shadows, f"shadow-{index}")


def build_shadows(data: str, out: str | os.PathLike[str], arch: str, recipe, k: int = 8,
                  seed: int = 0, device: str = "auto", progress: bool = True) -> dict:
    """Train k shadows into ``out`` (resumable: finished ones are kept) with the original's
    ``arch`` and ``recipe``, then store every shadow's phi and margin on the whole training
    split, so a request is scored without loading a model. Returns shadows.json's content."""
    from tqdm import tqdm

    from oblivio.training import train_to_dir

    if k < 4 or k % 2:
        raise OblivioError(f"shadows need an even k >= 4 (2 in and 2 out per image at least), "
                           f"got k={k}")
    if not is_local(os.fspath(out)):
        raise OblivioError(f"shadows are a local directory, not {os.fspath(out)}")
    dataset = open_dataset(data)
    train = dataset.split("train")
    out = Path(out)
    plan = {"arch": arch, "recipe": asdict(recipe), "data": str(data), "k": k, "seed": seed,
            "train_ids_sha256": ids_sha256(train.sample_ids), "train_size": len(train)}
    found = json.loads((out / SHADOWS_FILE).read_text()) if (out / SHADOWS_FILE).exists() \
        else None
    if found is not None:
        differs = [key for key in plan if found[key] != plan[key]]
        if differs:
            raise OblivioError(f"{out} holds shadows of another training set or recipe "
                               f"({', '.join(differs)} differ): give a new --out")
        plan["seconds"] = found.get("seconds", {})
    elif out.exists() and any(out.iterdir()):
        raise OblivioError(f"{out} is not empty and holds no shadows")
    out.mkdir(parents=True, exist_ok=True)
    plan.setdefault("seconds", {})
    if not (out / TRAIN_IDS_FILE).exists():
        write_sample_ids(out / TRAIN_IDS_FILE, train.sample_ids)
    keep = membership(len(train), k, seed)
    finished = (out / OUTPUTS_FILE).exists()  # erased weights are never trained again
    for m in tqdm(range(k), desc="shadows", disable=not progress or finished):
        target = shadow_dir(out, m)
        if finished or (target / "metrics.json").exists():
            continue
        shutil.rmtree(target, ignore_errors=True)
        excluded = out / f"excluded-{m}.parquet"
        write_sample_ids(excluded, train.ids_at(np.flatnonzero(~keep[m])))
        start = time.perf_counter()
        train_to_dir(data, arch, str(target), replace(recipe, seed=seed * 1000 + m),
                     exclude_ids=str(excluded), device=device, progress=False)
        plan["seconds"][target.name] = time.perf_counter() - start
        (out / SHADOWS_FILE).write_text(json.dumps(plan, indent=1))
    if not (out / OUTPUTS_FILE).exists():
        everything = np.arange(len(train))
        scored = np.stack([outputs(shadow_dir(out, m), dataset, everything, device)
                           for m in range(k)])
        partial = out / f".{OUTPUTS_FILE}.partial"
        with partial.open("wb") as f:
            np.save(f, scored)
        partial.replace(out / OUTPUTS_FILE)
    (out / SHADOWS_FILE).write_text(json.dumps(plan, indent=1))
    return plan


def _file(shadows: str | os.PathLike[str], name: str) -> str | None:
    """The URI of a file of the shadows (a directory or s3:// URI), None where it is missing."""
    uri = f"{os.fspath(shadows).rstrip('/')}/{name}"
    fs, path = resolve(uri)
    try:
        found = fs.get_file_info(path).type != FileType.NotFound
    except OSError as exc:
        raise OblivioError(f"cannot read {uri}: {first_line(exc)}") from exc
    return uri if found else None


def read_shadows(shadows: str | os.PathLike[str]) -> dict:
    """shadows.json of finished shadows. Scoring needs it and outputs.npy alone, so a copy of
    the two (on S3, for a pipeline's pods) serves as well as the directory that trained them."""
    plan = _file(shadows, SHADOWS_FILE)
    if plan is None:
        raise OblivioError(f"{os.fspath(shadows)} holds no shadows (no {SHADOWS_FILE}): train "
                           "them with `oblivio pool shadows`")
    if _file(shadows, OUTPUTS_FILE) is None:
        raise OblivioError(f"the shadows in {os.fspath(shadows)} are unfinished: run `oblivio "
                           "pool shadows` again to finish them")
    return json.loads(read_bytes(plan))


def check_shadows(shadows: str | os.PathLike[str], dataset: Dataset) -> dict:
    """shadows.json of finished shadows of ``dataset``'s training split, refused (one line)
    when they split another one: what a pipeline checks before any step works. The caller's
    open dataset, so its training split is loaded once."""
    plan = read_shadows(shadows)
    if ids_sha256(dataset.split("train").sample_ids) != plan["train_ids_sha256"]:
        raise OblivioError(f"the shadows in {os.fspath(shadows)} were trained on another "
                           f"training split ({plan['train_size']} images) than "
                           f"{dataset.uri}'s")
    return plan


class Shadows:
    """The shadows' outputs on a request's images, as a pool of k/2 retrains and k/2 models
    trained with it per image, and the scores of any model."""

    def __init__(self, shadows: str | os.PathLike[str], data: str,
                 ids: Sequence[str] | pa.Array | str | os.PathLike[str]) -> None:
        dataset = open_dataset(data)
        self.plan = check_shadows(shadows, dataset)
        self.path = os.fspath(shadows)
        train = dataset.split("train")
        self.ids = read_sample_ids(ids) if isinstance(ids, (str, os.PathLike)) else ids
        self.rows = train.indices(self.ids)
        self.dataset = dataset
        k = self.plan["k"]
        keep = membership(len(train), k, self.plan["seed"])[:, self.rows]
        stored = read_bytes(f"{self.path.rstrip('/')}/{OUTPUTS_FILE}")
        scored = np.load(io.BytesIO(stored))[:, :, self.rows]  # no pickles: no code runs
        erased = np.isnan(scored).any(axis=(0, 1))
        if erased.any():
            first = self.ids[int(np.flatnonzero(erased)[0])]
            raise OblivioError(f"{int(erased.sum())} of the request's images (first: {first}) "
                               f"were erased from the shadows in {self.path}: an earlier "
                               "request for them was honoured")
        half = k // 2
        # per image, its in- and out-shadows' outputs: (k/2, 2, examples) each
        order = np.argsort(~keep, axis=0, kind="stable")  # in-shadows first
        ranked = np.take_along_axis(scored, order[:, None, :], axis=0)
        self.inside, self.outside = ranked[:half], ranked[half:]
        phi_in, phi_out = self.inside[:, 0], self.outside[:, 0]
        self.spread_in, self.spread_out = spread(phi_in), spread(phi_out)
        self.mean_in, self.mean_out = phi_in.mean(0), phi_out.mean(0)
        self.gap = (self.mean_in - self.mean_out) / np.sqrt(
            (self.spread_in ** 2 + self.spread_out ** 2) / 2)
        self.memorised = self.gap > MEMORISED_GAP
        # each out-shadow scored against the others' mean: the negatives
        loo = (phi_out.sum(0) - phi_out) / (half - 1)
        self.negatives = llr(phi_out, self.mean_in, self.spread_in, loo, self.spread_out)

    def score(self, out: np.ndarray, parts: dict[str, np.ndarray] | None = None) -> dict:
        """Evidence for one model's (2, examples) outputs, as :meth:`Pool.score`."""
        phi, margin = out
        scores = llr(phi, self.mean_in, self.spread_in, self.mean_out, self.spread_out)
        eps = gdp_epsilon(np.abs(phi - self.mean_out) / self.spread_out)
        ref = self.outside[:, 1]
        klom = 0.5 * ((margin - ref.mean(0)) / spread(ref)) ** 2
        parts = {"all": np.ones_like(self.memorised), "memorised": self.memorised,
                 **(parts or {})}
        return {part: part_evidence(
            mask, scores, self.negatives[:, mask].ravel(), eps, klom, phi,
            float(self.mean_out[mask].mean()) if mask.any() else None,
            float(self.mean_in[mask].mean()) if mask.any() else None)
            for part, mask in parts.items()}

    def judged_tpr(self, phi: np.ndarray) -> float:
        """TPR at 1% FPR of the part the gate judges (:func:`judged_part`), from the request's
        phi alone: what match checks while it works, so that it stops where the gate that will
        judge it passes, not only where the images are close on average."""
        mask = self.memorised if self.memorised.any() else np.ones_like(self.memorised)
        scores = llr(phi, self.mean_in, self.spread_in, self.mean_out, self.spread_out)
        return float(np.mean(scores[mask] > np.quantile(self.negatives[:, mask], 0.99)))

    def score_model(self, model: str | os.PathLike[str], device: str = "cpu",
                    parts: dict[str, np.ndarray] | None = None) -> dict:
        return self.score(outputs(model, self.dataset, self.rows, device), parts)

    def summary(self) -> dict:
        seconds = self.plan.get("seconds", {})
        return {"path": self.path, "arch": self.plan["arch"], "k": self.plan["k"],
                "examples": len(self.rows), "memorised": int(self.memorised.sum()),
                "memorised_gap": MEMORISED_GAP, "fprs": list(FPRS),
                "negatives_per_example": self.plan["k"] // 2,
                "training_seconds": float(sum(seconds.values())) if seconds else None}


def judged_part(evidence: dict) -> str:
    """The part the gate judges: the memorised one, the whole request when none is."""
    return "memorised" if evidence.get("memorised") else "all"


def shadow_gate(evidence: dict, max_tpr_excess: float) -> list[str]:
    """Reasons a model fails its shadows (:func:`gates.shadow_failures` on the judged part)."""
    part = judged_part(evidence)
    return shadow_failures(evidence[part]["tpr_at_1pct_fpr"], max_tpr_excess, part)


def shadow_evidence(shadows: str | os.PathLike[str], data: str, model: str | os.PathLike[str],
                    ids: list[str], max_tpr_excess: float, device: str = "cpu") -> dict:
    """The report's "shadows" section for ``model`` on the request ``ids``."""
    loaded = Shadows(shadows, data, ids)
    evidence = loaded.score_model(model, device)
    return {**loaded.summary(), "model": evidence, "max_tpr_excess": max_tpr_excess,
            "reasons": shadow_gate(evidence, max_tpr_excess)}


def erase_images(shadows: str | os.PathLike[str], ids: Sequence[str],
                 every_shadow: bool = False) -> dict:
    """Make the shadows forget the images of honoured requests: erase the weights of every
    shadow that trained on any of them (of every shadow with ``every_shadow``, for a class
    request: each trained on half of every class), and set their columns of outputs.npy to
    NaN, leaving no older version of it on S3. Scoring never needs the weights, so the shadows
    still judge every other image. Where no shadows are left (the folder was removed, or
    never held any) there is nothing to erase: an empty receipt, so that one gone folder does
    not hold up every later batch. Returns the receipt."""
    import pyarrow.compute as pc

    from oblivio.data.erase import erase, erase_older_versions

    base = os.fspath(shadows).rstrip("/")
    plan_uri = _file(shadows, SHADOWS_FILE)
    if plan_uri is None:
        return {"where": base, "objects": [], "images": 0}
    plan = json.loads(read_bytes(plan_uri))
    order_uri = _file(shadows, TRAIN_IDS_FILE)
    order = read_sample_ids(order_uri) if order_uri \
        else open_dataset(plan["data"]).split("train").sample_ids  # shadows built before it
    positions = pc.index_in(pa.array(list(ids), pa.string()), value_set=order.cast(pa.string()))
    rows = np.asarray(positions.drop_null(), dtype=np.int64)
    keep = membership(plan["train_size"], plan["k"], plan["seed"])
    hit = np.ones(plan["k"], bool) if every_shadow else keep[:, rows].any(1)
    objects = []
    for m in np.flatnonzero(hit):
        objects += [{**o, "name": f"shadow-{m}/{o['name']}"} if is_local(base) else o
                    for o in erase(f"{base}/shadow-{m}")["objects"]]  # S3: whole keys
    uri = _file(shadows, OUTPUTS_FILE)
    if len(rows) and uri is not None:  # unfinished shadows have no outputs yet
        scored = np.load(io.BytesIO(read_bytes(uri)))
        scored[:, :, rows] = np.nan
        buffer = io.BytesIO()
        np.save(buffer, scored)
        write_bytes(uri, buffer.getvalue())
        objects += erase_older_versions(uri)["objects"]
    return {"where": base, "objects": objects, "images": len(rows),
            "shadows_erased": [int(m) for m in np.flatnonzero(hit)],
            "ids_sha256": ids_sha256(list(ids))}
