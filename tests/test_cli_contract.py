"""The one-line contract, verb by verb: bad input and faults end with one ``error: ...`` line on
stderr, exit status 2, no traceback, and nothing written or changed. Table-driven, so a new
case is one row; the cases of the first audit that already held are covered by the other test
files (test_class_forgetting, test_instance_forgetting, test_models, test_data, test_pipeline,
test_methods) and stay there; kills and Ctrl-C are in test_kills_round_two, a full disk and a
read-only store (real mounts) in test_mounts."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from oblivio.cli import app
from oblivio.data.write import write_classes
from oblivio.deletion.promotion import register_champion
from oblivio.models.checkpoint import read_config
from oblivio.tracking.registry import Lineage
from oblivio.tracking.store import connect
from oblivio.unlearn.classes.forget import ProjectionSettings, forget_classes
from tests.servers import free_port

runner = CliRunner()
NO_KUBEFLOW = f"http://127.0.0.1:{free_port()}"  # nothing listens there


@pytest.fixture(scope="module")
def spoiled(trained_rgb, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Inputs made once for the module (none of the cases writes them): a model with a NaN
    weight, one with int64 weights, a dataset whose PNG lost a byte of pixel data (its CRC no
    longer matches), one with a PNG claiming 30000 x 30000 pixels, a request's ids."""
    data, model = trained_rgb
    root = tmp_path_factory.mktemp("spoiled")
    for name, spoil in (("nanmodel", lambda t: t.index_fill_(0, torch.tensor([0]), math.nan)),
                        ("intmodel", lambda t: t.to(torch.int64))):
        _spoiled_model(model, root / name, spoil)
    images = pq.read_table(Path(data) / "train.parquet").column("image").to_pylist()
    for name, image in (("crc", _flipped(images[150])), ("bomb", _bomb())):
        shutil.copytree(data, root / name)
        table = pq.read_table(root / name / "train.parquet")
        blobs = table.column("image").to_pylist()
        blobs[150] = image
        pq.write_table(table.set_column(2, "image", pa.array(blobs, pa.binary())),
                       root / name / "train.parquet")
    (root / "ids.txt").write_text("rgb/train/0000\nrgb/train/0061\n")
    return {key.upper(): str(root / name) for key, name in (
        ("nanmodel", "nanmodel"), ("intmodel", "intmodel"), ("crc", "crc"), ("bomb", "bomb"),
        ("ids", "ids.txt"))}


@pytest.fixture(scope="module")
def shared(trained_rgb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """What every case may read and none writes, made once for the module (it was made per
    case: about 45 registrations and projections, minutes of the suite): an MLflow store and
    oblivio home with ``trained_rgb``'s model registered as ``tiny`` champion, and a copy of
    the model that forgot class 1. The cases check this folder too for anything written."""
    root = tmp_path_factory.mktemp("contract")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
        env.setenv("OBLIVIO_HOME", str(root / "home"))
        with mlflow.start_run(experiment_id=connect()):
            register_champion(trained_rgb[1], "tiny", Lineage("trained"))
        data, model = trained_rgb
        forget_classes(str(model), str(data), "1", str(root / "forgot1"),
                       ProjectionSettings(alpha_r=100, alpha_f=3, retain_per_class=15,
                                          forget_samples=20, val_per_class=8), device="cpu",
                       progress=False)
        yield root


@pytest.fixture()
def world(trained_rgb, shared: Path, spoiled: dict, tmp_path: Path) -> dict:
    """Everything the cases point at: data, a model, a model that forgot class 1, a dataset
    with other class names, one with a corrupt image, a binary file, a plain file."""
    data, model = trained_rgb
    renamed = tmp_path / "renamed"
    shutil.copytree(data, renamed)
    write_classes(str(renamed), "rgb", ["red", "green", "blue", "grey"])
    corrupt = tmp_path / "corrupt"
    shutil.copytree(data, corrupt)
    table = pq.read_table(corrupt / "train.parquet")
    images = table.column("image").to_pylist()
    images[150] = b"\x89PNG not really"
    pq.write_table(table.set_column(2, "image", pa.array(images, pa.binary())),
                   corrupt / "train.parquet")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "afile").write_text("not a directory\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine\n")
    return {"DATA": str(data), "MODEL": str(model), "FORGOT1": str(shared / "forgot1"),
            **spoiled,
            "RENAMED": str(renamed), "CORRUPT": str(corrupt),
            "BINARY": str(tmp_path / "binary.txt"), "AFILE": str(tmp_path / "afile"),
            "FULL": str(tmp_path / "full"), "OUT": str(tmp_path / "out"),
            "UNDER_FILE": str(tmp_path / "afile" / "out")}


def _spoiled_model(model: Path, out: Path, spoil) -> None:
    """A copy of ``model`` whose first weight tensor ``spoil`` changed, its config's SHA-256
    fixed to match: what a diverged or foreign writer would leave."""
    shutil.copytree(model, out)
    state = load_file(out / "model.safetensors")
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = spoil(state[key].clone())
    save_file(state, out / "model.safetensors")
    config = json.loads((out / "config.json").read_text())
    config["weights_sha256"] = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    (out / "config.json").write_text(json.dumps(config))


def _flipped(png: bytes) -> bytes:
    at = png.index(b"IDAT") + 6  # inside the compressed pixels, the chunk's CRC left as it was
    return png[:at] + bytes([png[at] ^ 0xFF]) + png[at + 1:]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (len(body).to_bytes(4, "big") + kind + body
            + zlib.crc32(kind + body).to_bytes(4, "big"))


def _bomb() -> bytes:
    header = (30000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))


CASES = [
    ("forget over its own model", ["forget", "--model", "MODEL", "--data", "DATA", "--classes",
                                   "1", "--out", "MODEL"], "would overwrite the input"),
    ("forget into a folder with content", ["forget", "--model", "MODEL", "--data", "DATA",
                                           "--classes", "1", "--out", "FULL"], "is not empty"),
    ("forget where nothing can be written", ["forget", "--model", "MODEL", "--data", "DATA",
                                             "--classes", "1", "--out", "UNDER_FILE"],
     "cannot write"),
    ("forget a binary id file", ["forget", "--model", "MODEL", "--data", "DATA", "--forget-ids",
                                 "BINARY", "--out", "OUT"], "is neither Parquet"),
    ("forget from a missing dataset", ["forget", "--model", "MODEL", "--data", "FULL/nowhere",
                                       "--classes", "1", "--out", "OUT"], "does not exist"),
    ("forget with other class names", ["forget", "--model", "MODEL", "--data", "RENAMED",
                                       "--classes", "1", "--out", "OUT"],
     "was trained on other classes than"),
    ("forget a class again", ["forget", "--model", "FORGOT1", "--data", "DATA", "--classes",
                              "1", "--out", "OUT"], "has already forgotten class(es) 1 (colour1)"),
    ("forget from a corrupt dataset", ["forget", "--model", "MODEL", "--data", "CORRUPT",
                                       "--classes", "1", "--out", "OUT"],
     "row 150 is not a decodable image"),
    ("classes and ids at once", ["forget", "--model", "MODEL", "--data", "DATA", "--classes",
                                 "1", "--forget-ids", "BINARY", "--out", "OUT"],
     "give exactly one of --classes and --forget-ids"),
    ("train over its data", ["train", "--data", "DATA", "--out", "DATA", "--epochs", "1"],
     "would overwrite the input"),
    ("evaluate another class than forgotten", ["evaluate", "--model", "FORGOT1", "--data",
                                               "DATA", "--forget-classes", "2", "--out", "OUT"],
     "has forgotten class(es) 1 (colour1), not 2"),
    ("evaluate into its model", ["evaluate", "--model", "FORGOT1", "--data", "DATA",
                                 "--forget-classes", "1", "--out", "FORGOT1"],
     "would overwrite the input"),
    ("check a corrupt dataset", ["data", "check", "CORRUPT"], "row 150 is not a decodable"),
    ("check a missing dataset", ["data", "check", "FULL/nowhere"], "does not exist"),
    ("convert over a file", ["data", "fashion-mnist", "--out", "AFILE"], "is a file"),
    ("compile where nothing can be written", ["pipeline", "compile", "--out", "UNDER_FILE"],
     "error: "),
    ("lineage of no model", ["lineage", "no-such-model"], "no registered model named"),
    ("promote a version that is not there", ["promote", "tiny", "9"], "error: "),
    ("demo with no images", ["demo", "--model-name", "tiny", "--data", "DATA", "--images", "0"],
     "--images must be at least 1"),
    ("schedule a foreign image", ["pipeline", "schedule", "--host", NO_KUBEFLOW, "--image",
                                  "Not An Image"], "--image 'Not An Image': expected"),
    ("unschedule with no token file", ["pipeline", "unschedule", "--host", NO_KUBEFLOW,
                                       "--token-file", "FULL/nowhere"], "does not exist"),
    ("check an unreachable Kubeflow", ["pipeline", "check", "--host", NO_KUBEFLOW],
     "is unreachable"),
    # round two (issue 40): links, outputs inside inputs, non-finite numbers and weights,
    # gates in percent, usage errors, corrupt images
    ("forget into a folder inside its dataset", ["forget", "--model", "MODEL", "--data",
                                                 "CRC", "--classes", "1", "--out",
                                                 "CRC/unlearned"], "lies inside the input"),
    ("forget with a NaN learning rate", ["forget", "--model", "MODEL", "--data", "DATA",
                                         "--forget-ids", "IDS", "--method", "finetune",
                                         "--lr", "nan", "--out", "OUT"],
     "--lr must be a finite number, got nan"),
    ("forget with NaN epochs", ["forget", "--model", "MODEL", "--data", "DATA", "--forget-ids",
                                "IDS", "--method", "finetune", "--epochs", "nan", "--out",
                                "OUT"], "--epochs must be a finite number"),
    ("forget with an infinite alpha", ["forget", "--model", "MODEL", "--data", "DATA",
                                       "--classes", "1", "--alpha-r", "inf", "--alpha-f", "3",
                                       "--out", "OUT"], "--alpha-r must be a finite number"),
    ("forget from a NaN model", ["forget", "--model", "NANMODEL", "--data", "DATA",
                                 "--classes", "1", "--out", "OUT"],
     "1 weights are NaN or infinite"),
    ("evaluate a NaN model", ["evaluate", "--model", "NANMODEL", "--data", "DATA",
                              "--forget-classes", "1", "--out", "OUT"],
     "weights are NaN or infinite"),
    ("forget from int64 weights", ["forget", "--model", "INTMODEL", "--data", "DATA",
                                   "--classes", "1", "--out", "OUT"], "expects float32"),
    ("SSD's Fisher over no samples", ["forget", "--model", "MODEL", "--data", "DATA",
                                      "--classes", "1", "--method", "ssd", "--fisher-samples",
                                      "0", "--out", "OUT"], "--fisher-samples must be at least"),
    ("train with batches of 0", ["train", "--data", "DATA", "--out", "OUT", "--batch-size",
                                 "0"], "--batch-size must be at least 1"),
    ("train with a negative lr", ["train", "--data", "DATA", "--out", "OUT", "--lr=-0.1"],
     "--lr must be a positive, finite number"),
    ("evaluate with negative SVC samples", ["evaluate", "--model", "FORGOT1", "--data", "DATA",
                                            "--forget-classes", "1", "--out", "OUT",
                                            "--svc-samples", "-1"], "--svc-samples"),
    ("promote with a gate in percent", ["promote", "tiny", "1", "--max-forget-acc", "5"],
     "--max-forget-acc is a fraction in [0, 1] (0.05 for 5%), got 5.0"),
    ("run with a gate in percent", ["run", "--model-name", "tiny", "--data", "DATA",
                                    "--forget-classes", "1", "--max-retain-drop", "2.5"],
     "--max-retain-drop is a fraction in [0, 1]"),
    ("run over no shards", ["run", "--model-name", "tiny", "--data", "DATA",
                            "--forget-classes", "1", "--shards", "0"],
     "shards must be 1 to 256, got 0"),
    ("run with a negative budget", ["run", "--model-name", "tiny", "--forget-ids", "IDS",
                                    "--data", "DATA", "--instance-max-seconds", "-5"],
     "instance max seconds must be 0 or more (0: no budget), got -5.0"),
    ("a missing option", ["forget", "--data", "DATA"], "Missing option '--model'"),
    ("an unknown verb", ["bogus"], "No such command 'bogus'"),
    ("check a PNG whose CRC fails", ["data", "check", "CRC"],
     "row 150 is not a decodable image (a PNG chunk does not match its CRC)"),
    ("check a decompression bomb", ["data", "check", "BOMB"],
     "row 150 claims too many pixels"),
    ("an empty ticket", ["requests", "submit", "--model-name", "tiny", "--data", "DATA",
                         "--classes", "1", "--ticket", ""], "--ticket is empty"),
]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize(("case", "argv", "message"), CASES, ids=[c[0] for c in CASES])
def test_one_line_and_nothing_written(world: dict, shared: Path, tmp_path: Path, case: str,
                                      argv: list[str], message: str) -> None:
    before = snapshot(tmp_path), snapshot(shared)
    args = [next((v + a[len(k):] for k, v in world.items() if a == k or
                  a.startswith(k + "/")), a) for a in argv]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (case, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert (snapshot(tmp_path), snapshot(shared)) == before, f"{case} changed files"


def test_a_link_or_a_folder_inside_never_stands_in_for_a_new_output(world: dict,
                                                                     tmp_path: Path) -> None:
    """``--out`` compared with every input after links are resolved: a link to the output
    given as the model, or an output inside the model's folder, is refused with nothing
    written (``--force`` replaced the input model before)."""
    copy = tmp_path / "modelcopy"
    shutil.copytree(world["MODEL"], copy)
    (tmp_path / "link").symlink_to(copy)
    before = snapshot(copy)
    for model, out, message in ((tmp_path / "link", copy, "would overwrite the input"),
                                (copy, copy / "sub", "lies inside the input")):
        result = runner.invoke(app, ["forget", "--model", str(model), "--data", world["DATA"],
                                     "--classes", "1", "--out", str(out), "--force"])
        assert result.exit_code == 2 and message in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
        assert snapshot(copy) == before


def test_force_replaces_a_folder_with_content(world: dict) -> None:
    result = runner.invoke(app, ["forget", "--model", world["MODEL"], "--data", world["DATA"],
                                 "--classes", "1", "--out", world["FULL"], "--force",
                                 "--alpha-r", "100", "--alpha-f", "3", "--retain-per-class",
                                 "15", "--forget-samples", "20", "--val-per-class", "8"])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(world["FULL"])) == ["config.json", "model.safetensors"]
    assert not [p for p in os.listdir(Path(world["FULL"]).parent) if ".partial" in p]


def test_unreachable_s3_is_one_line(world: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    result = runner.invoke(app, ["data", "fashion-mnist", "--out", "s3://nowhere/fm"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write s3://nowhere/fm"), lines


KILL_WHILE_SAVING = """
import os, signal, sys
from oblivio.data import storage
from oblivio.models.checkpoint import load_model, save_model
model = load_model(sys.argv[1])
real = storage.write_bytes
def write_bytes(uri, data):
    if str(uri).endswith("config.json"):
        os.kill(os.getpid(), signal.SIGKILL)  # the weights are down, the config is not
    real(uri, data)
storage.write_bytes = write_bytes
c = model.config
save_model(model, sys.argv[2], arch=c["arch"], class_names=c["class_names"],
           img_size=c["img_size"])
"""


def test_a_kill_while_saving_leaves_the_old_model_whole(world: dict, tmp_path: Path) -> None:
    target = tmp_path / "target"
    shutil.copytree(world["FORGOT1"], target)
    before = snapshot(target)
    proc = subprocess.run([sys.executable, "-c", KILL_WHILE_SAVING, world["MODEL"],
                           str(target)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert snapshot(target) == before  # not the new weights beside the old config
    assert read_config(target)["weights_sha256"] == json.loads(
        (Path(world["FORGOT1"]) / "config.json").read_text())["weights_sha256"]
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-c", KILL_WHILE_SAVING, world["MODEL"], str(fresh)],
                   capture_output=True)
    assert not fresh.exists()  # no directory that looks whole


@pytest.mark.parametrize(("variable", "value", "argv", "message"), [
    ("OBLIVIO_LEDGER_URL", "mysql://u@localhost/ledger", ["requests", "list"],
     "the ledger runs on PostgreSQL (postgresql+psycopg://...) or SQLite"),
    ("OBLIVIO_LEDGER_URL", "sqlite:///NOTADB", ["requests", "list"],
     "is unusable (file is not a database)"),
    ("MLFLOW_TRACKING_URI", "sqlite:///NOTADB", ["lineage", "tiny"],
     "is unusable (file is not a database)"),
    ("MLFLOW_TRACKING_URI", "sqlite:///FRESH/mlflow.db", ["lineage", "tiny"],
     "no MLflow store at"),
], ids=["ledger on MySQL", "ledger file no database", "MLflow file no database",
        "a query of no store"])
def test_a_store_that_is_not_one_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             variable: str, value: str, argv: list[str],
                                             message: str) -> None:
    """A ledger or MLflow store that is not a database is one line, at once, and a query (the
    lineage) creates no store where there was none."""
    (tmp_path / "notadb").write_text("not a database\n")
    monkeypatch.setenv(variable, value.replace("NOTADB", str(tmp_path / "notadb"))
                       .replace("FRESH", str(tmp_path / "fresh")))
    monkeypatch.setenv("OBLIVIO_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "fresh").exists()
    assert (tmp_path / "notadb").read_text() == "not a database\n"


def test_run_exits_2_when_its_version_fails_the_gates(registered: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A monitor reads the exit status: a version registered but not promoted (its gates
    failed) is status 2 with the reason, as ``batch run`` does. The pipeline itself is stood
    in for here (test_pipeline runs it); this is the command's reading of its outcome."""
    import oblivio_pipeline.local

    outcome = {"report": "| metric |", "forgot": "class(es) 1", "version": "2",
               "gate": "failed: forget accuracy 0.3000 > 0.01"}
    monkeypatch.setattr(oblivio_pipeline.local, "run_local", lambda *a, **k: outcome)
    result = runner.invoke(app, ["run", "--model-name", registered, "--forget-classes", "1"])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: version 2 was registered but not promoted: its "
                                     "gates failed: forget accuracy 0.3000 > 0.01")
    monkeypatch.setitem(outcome, "gate", "passed")
    assert runner.invoke(app, ["run", "--model-name", registered]).exit_code == 0


def test_a_fresh_store_says_nothing_but_the_error(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Creating the MLflow store on a fresh home prints none of MLflow's or alembic's INFO
    lines before the one error line."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("OBLIVIO_HOME", str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-m", "oblivio.cli", "promote", "nobody", "1"],
                          capture_output=True, text=True, env={**os.environ})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: ") and "nobody" in proc.stderr
