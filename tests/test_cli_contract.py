"""The one-line contract, verb by verb: bad input and faults end with one ``error: ...`` line on
stderr, exit status 2, no traceback, and nothing written or changed. Table-driven, so a new
case is one row; the cases of the first audit that already held are covered by the other test
files (test_class_forgetting, test_instance_forgetting, test_models, test_data, test_pipeline,
test_methods) and stay there."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from oblivio.cli import app
from oblivio.data.write import write_classes
from oblivio.models.checkpoint import read_config
from tests.servers import free_port

runner = CliRunner()
NO_KUBEFLOW = f"http://127.0.0.1:{free_port()}"  # nothing listens there


@pytest.fixture()
def world(trained_rgb, projected: Path, tmp_path: Path) -> dict:
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
    return {"DATA": str(data), "MODEL": str(model), "FORGOT1": str(projected),
            "RENAMED": str(renamed), "CORRUPT": str(corrupt),
            "BINARY": str(tmp_path / "binary.txt"), "AFILE": str(tmp_path / "afile"),
            "FULL": str(tmp_path / "full"), "OUT": str(tmp_path / "out"),
            "UNDER_FILE": str(tmp_path / "afile" / "out")}


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
]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize(("case", "argv", "message"), CASES, ids=[c[0] for c in CASES])
def test_one_line_and_nothing_written(world: dict, registered: str, tmp_path: Path, case: str,
                                      argv: list[str], message: str) -> None:
    before = snapshot(tmp_path)
    args = [next((v + a[len(k):] for k, v in world.items() if a == k or
                  a.startswith(k + "/")), a) for a in argv]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (case, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert snapshot(tmp_path) == before, f"{case} changed files"


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
