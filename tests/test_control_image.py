"""The control-plane image leaves torch out (images/Dockerfile, target control): the steps it
runs must work without it. Here they run in a subprocess where torch, timm, torchvision and
triton cannot be imported, against the same ledger and MLflow registry as the test."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from oblivio.deletion.promotion import register_champion
from oblivio.ledger.store import Ledger
from oblivio.tracking.registry import Lineage, client
from oblivio.tracking.runs import run_id_of, start_run
from oblivio.tracking.store import connect

ROOT = Path(__file__).resolve().parents[1]
TORCH = ("torch", "timm", "torchvision", "triton")
BLOCK = f"import sys\nfor m in {TORCH!r}:\n    sys.modules[m] = None\n"


def without_torch(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def names(lock: str) -> set[str]:
    return set(re.findall(r"(?m)^([A-Za-z0-9._-]+)==", lock))


def test_the_control_lock_is_current_and_leaves_torch_out() -> None:
    spec = importlib.util.spec_from_file_location("control_lock",
                                                  ROOT / "images" / "control_lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    full = (ROOT / "requirements.lock").read_text()
    control = (ROOT / "requirements-control.lock").read_text()
    assert control == module.control_lock(full), "run python images/control_lock.py"
    left_out = names(full) - names(control)
    assert set(TORCH) <= left_out and any(n.startswith("nvidia-") for n in left_out)
    assert {"mlflow", "kfp", "sqlalchemy", "pyarrow", "setuptools"} <= names(control)


def test_the_block_holds() -> None:
    """The control: what needs torch fails in the blocked interpreter."""
    found = without_torch("from oblivio.models import load_model")
    assert found.returncode != 0 and "import of torch halted" in found.stderr


def test_the_control_steps_run_without_torch(registered: str, trained_rgb, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = Ledger()
    request, _ = ledger.submit(registered, "classes", ["1"])
    claim_out = tmp_path / "root" / "oblivio-deletion-batch" / "job-1" / "claim-batch" / "7"
    claim_out.mkdir(parents=True)
    claimed = without_torch(
        "from kfp import dsl\n"
        "from oblivio_pipeline.components import claim_batch\n"
        f"out = claim_batch.python_func(model_name={registered!r}, "
        f"batch_root={str(tmp_path / 'batches')!r}, lease_minutes=60, max_attempts=3, "
        f"job_id='job-1', shadows_uri='', claim=dsl.Artifact(uri={str(claim_out / 'claim')!r}))\n"
        "print(out[0])")
    assert claimed.returncode == 0, claimed.stderr
    batch = claimed.stdout.split()[-1]
    assert ledger.get(request.id).state == "claimed"
    with mlflow.start_run(experiment_id=connect()):  # what the classes' part registers
        register_champion(trained_rgb[1], registered, Lineage(
            "projection", forgotten_classes=[1], deletion_batch=f"{batch}.classes"))
    start_run("job-1", "batch", {})
    settled = without_torch(
        "from kfp import dsl\n"
        "from oblivio_pipeline.components import (complete_batch, plan_shards,\n"
        "    record_outcome, settle_batch)\n"
        f"print(settle_batch.python_func(model_name={registered!r}, batch_id={batch!r}, "
        "token='1', job_id='job-1', kind='classes', max_attempts=3))\n"
        f"print(complete_batch.python_func(model_name={registered!r}, batch_id={batch!r}, "
        "token='1', job_id='job-1', max_attempts=3, champion_version='2', "
        f"receipt=dsl.Artifact(uri={str(tmp_path / 'receipt')!r})))\n"
        "print(plan_shards.python_func(shards=3))\n"
        "record_outcome.python_func(job_id='job-1', deletion_batch='', "
        "status=dsl.PipelineTaskFinalStatus(state='COMPLETE', "
        "pipeline_job_resource_name='jobs/1', pipeline_task_name='exit-handler-1', "
        "error_code=None, error_message=None))\n"
        "import mlflow.server  # the chart's MLflow server\n"
        "from oblivio.cli import app\n"
        "app(['pipeline', 'schedule', '--help'], standalone_mode=False)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in "
        f"{TORCH!r} and sys.modules[m] is not None]\n")
    assert settled.returncode == 0, settled.stderr
    lines = settled.stdout.splitlines()
    assert "2" in lines and "completed" in lines and "[0, 1, 2]" in lines
    assert "--token-file" in settled.stdout  # the hook's command answered
    assert (ledger.get(request.id).state, ledger.get(request.id).version) == ("honoured", "2")
    assert client().get_run(run_id_of("job-1")).info.status == "FINISHED"
