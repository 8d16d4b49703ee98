"""``oblivio run``: the same pipeline on this machine, through ``kfp.local.SubprocessRunner``,
against the local MLflow (SQLite under the oblivio home). On a fresh machine it prepares
Fashion-MNIST and trains and registers the original model first."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from oblivio.data.storage import is_local
from oblivio.deletion.promotion import register_champion
from oblivio.errors import OblivioError
from oblivio.home import oblivio_home
from oblivio.runner import RUNNER_ENV, this_runner
from oblivio.tracking.registry import CHAMPION, Lineage, forgotten
from oblivio.tracking.runs import close_abandoned_runs
from oblivio.tracking.store import connect

#: Classes ``oblivio run`` forgets when none is given: the first one the champion still knows.
DEMO_ORDER = (7, 2, 9, 5, 0, 1, 3, 4, 6, 8)


def ensure_dataset(home: Path, idx_dir: str) -> Path:
    """Fashion-MNIST under the home, converted unless whole (a folder an older oblivio left
    half-written, killed during its conversion, is converted again in its place)."""
    from oblivio.data.contract import CLASSES_FILE, split_file
    from oblivio.data.fashion_mnist import convert

    data = home / "data" / "fashion-mnist"
    if not all((data / name).is_file() for name in (CLASSES_FILE, split_file("train"),
                                                     split_file("test"))):
        convert(str(data), idx_dir)
    return data


def ensure_registered(name: str, data: Path, home: Path, arch: str, epochs: int,
                      device: str, seed: int = 0) -> str:
    """Train and register the original as version 1 (alias champion) unless ``name`` exists."""
    import mlflow

    from oblivio.tracking.registry import model_exists
    from oblivio.training import recipe_for, train_to_dir

    experiment = connect()
    if model_exists(name):
        return "reused"
    out = home / "models" / f"{name}-original"
    if not (out / "metrics.json").exists():
        train_to_dir(str(data), arch, str(out), recipe_for(arch, epochs=epochs, seed=seed),
                     device=device)
    with mlflow.start_run(experiment_id=experiment, run_name=f"train {name}"):
        import json

        metrics = json.loads((out / "metrics.json").read_text())
        mlflow.log_params({"arch": arch, "epochs": epochs, "seed": seed, "dataset": str(data)})
        mlflow.log_metric("test_acc", metrics["test_acc"])
        register_champion(out, name, Lineage(method="trained", params={"arch": arch,
                                                                       "epochs": epochs}))
    return "trained and registered"


@contextlib.contextmanager
def stopped_on_signals() -> Iterator[None]:
    """SIGTERM (what Kubernetes and ``kill`` send) stops the block as Ctrl-C does, so the run's
    MLflow run is closed as KILLED at once rather than by the next ``oblivio run``."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def next_class(name: str) -> str:
    from oblivio.tracking.registry import client

    classes, _ = forgotten(client().get_model_version_by_alias(name, CHAMPION).tags)
    left = [c for c in DEMO_ORDER if c not in classes]
    if len(left) <= 1:
        raise OblivioError(f"{name}@{CHAMPION} has forgotten all but one class")
    return str(left[0])


def run_local(name: str = "fashion-classifier", forget_classes: str | None = None,
              data: str | None = None, idx_dir: str = "/usr/share/datasets/fashion-mnist",
              arch: str = "resnet18", epochs: int = 1, device: str = "auto",
              forget_ids: str | None = None, **params) -> dict:
    """Run the unlearning pipeline locally (classes, or a deletion request of training sample
    ids); returns the registered version's summary."""
    from kfp import local

    from oblivio.evaluation.gates import Gates
    from oblivio.steps import check_request_step
    from oblivio.unlearn.methods import check_pipeline_params
    from oblivio_pipeline.pipelines.oblivio_unlearning import make_unlearning_pipeline

    # the run's settings, checked before anything (a training of the original) happens
    Gates(**{k: v for k, v in params.items() if k in Gates.__dataclass_fields__})
    check_pipeline_params(params)
    home = oblivio_home()
    connect()  # fails fast, with one line, when MLflow is unreachable
    for job in close_abandoned_runs():
        print(f"marked the MLflow run of pipeline job {job} KILLED: the oblivio run that ran "
              "it is gone", file=sys.stderr)
    dataset = Path(data) if data else ensure_dataset(home, idx_dir)
    ensure_registered(name, dataset, home, arch, epochs, device)
    if forget_ids is not None and forget_classes is not None:
        raise OblivioError("give classes or sample ids to forget, not both")
    shadows = params.get("shadows_uri", "")
    if shadows and is_local(shadows):  # the steps run in other working directories
        params["shadows_uri"] = str(Path(shadows).resolve())
    classes = "" if forget_ids is not None else forget_classes or next_class(name)
    what = (f"the {forget_ids} deletion request" if forget_ids is not None
            else f"class(es) {classes}")
    # what the pipeline's first step checks, checked here too: one line and no run at all
    check_request_step(f"models:/{name}@{CHAMPION}", str(dataset), classes, forget_ids or "",
                       params)
    root = home / "kfp"
    local.init(runner=local.SubprocessRunner(use_venv=False), raise_on_error=True,
               pipeline_root=str(root))
    before = set(root.iterdir()) if root.exists() else set()
    pipeline = make_unlearning_pipeline(on_cluster=False)
    log = home / "logs" / f"run-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"forgetting {what} from {name}@champion with kfp.local; the steps' "
          f"output goes to {log}", file=sys.stderr)
    # the steps' own output (executor JSON, progress bars) goes to the log; kfp's one line per
    # finished task still reaches stderr
    with log.open("w") as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
        # kfp warns, once per task, that the project image is not a plain Python image and that
        # display names do nothing locally: both expected here
        warnings.filterwarnings("ignore", message=".*non-Python base image",
                                category=RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*no effect in the current local runner")
        try:
            os.environ[RUNNER_ENV] = this_runner()  # the steps follow this process
            with stopped_on_signals():
                pipeline(model_name=name, dataset_uri=str(dataset), forget_classes=classes,
                         forget_ids_uri=str(Path(forget_ids).resolve()) if forget_ids else "",
                         device=device, gpu_count="0", **params)
        except RuntimeError as exc:  # kfp's line, without its terminal colours
            reason = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines()[0]
            raise OblivioError(f"{reason} (step output: {log})") from None
        except KeyboardInterrupt:
            for job in close_abandoned_runs(this_runner()):
                print(f"marked the MLflow run of pipeline job {job} KILLED: interrupted",
                      file=sys.stderr)
            raise
        finally:
            os.environ.pop(RUNNER_ENV, None)
            erase_intermediates(name, sorted(set(root.iterdir()) - before)
                                if root.exists() else [])
    from oblivio.tracking.registry import CANDIDATE, TAG, client

    candidate = client().get_model_version_by_alias(name, CANDIDATE)
    return {"forget_classes": classes, "forgot": what, "report": candidate_report(name),
            "log": str(log), "version": str(candidate.version),
            "gate": candidate.tags.get(f"{TAG}gate", "")}


def erase_intermediates(name: str, folders: list[Path]) -> None:
    """The run's pipeline-root folders (the parent's and the new weights, statistics, features
    of the forget set) are erased once it is over, pass or fail: the registry holds what is
    kept, and a copy left here would outlive a purge. Each is a receipt in the ledger."""
    from oblivio.data.erase import erase
    from oblivio.ledger.store import Ledger

    ledger = Ledger()
    for folder in folders:
        receipt = erase(str(folder))
        ledger.record(name, "purged", what="pipeline-root intermediates", **receipt)


def candidate_report(name: str) -> str:
    """The Markdown report of the newest unlearned version (alias candidate)."""
    import mlflow

    from oblivio.tracking.registry import CANDIDATE, client

    version = client().get_model_version_by_alias(name, CANDIDATE)
    path = mlflow.artifacts.download_artifacts(run_id=version.run_id,
                                               artifact_path="report/report.md")
    return Path(path).read_text()
