"""Fixtures shared by tests/, components/*/tests and pipelines/*/tests: the real Fashion-MNIST
(converted once per session), a small synthetic RGB dataset and a model trained on it, so the
suite checks both the built-in data and the general contract; and MLflow, on SQLite per test or
as a real ``mlflow server`` process on loopback."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from oblivio.data.fashion_mnist import DEFAULT_IDX_DIR, convert
from tests.datasets import make_rgb_dataset

#: Where a crash in native code leaves its trace: the running test's id, and every thread's
#: stack (faulthandler). A SIGABRT or SIGSEGV ends a pytest process before its summary, and a CI
#: log's tail holds only the bottom of that stack; `make test` prints both files when pytest
#: fails. One pair per process: each pytest-xdist worker (gw0, gw1, ...) has its own.
CRASH_DIR = Path(__file__).parent / ".pytest_cache"
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.hookimpl(trylast=True)  # after pytest's faulthandler plugin, which points it at stderr
def pytest_configure(config: pytest.Config) -> None:
    import faulthandler

    if getattr(config.option, "numprocesses", None):  # pytest-xdist's controller, -n N
        passive_threads()
    CRASH_DIR.mkdir(exist_ok=True)
    # left open to the end of the process: a crash at exit is still written down
    faulthandler.enable(open(CRASH_DIR / f"crash-stacks-{WORKER}.txt", "w"),
                        all_threads=True)


def passive_threads() -> None:
    """Compute threads that sleep, not spin, while they wait: two workers whose torch threads
    each spin on both cores made the compute-bound tests 4-7 times slower than one worker
    alone (test_cli_forgets_ids_from_a_text_file: 55 s alone, 404 s beside another). Set in
    the controlling process, before any worker (or pipeline step it starts) loads OpenMP.
    The thread count stays the machine's: one thread trains other models, and the worlds the
    memorisation tests are sized on are these."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files that run pipelines under kfp's local runner first, the rest in their order.
    pytest-xdist hands whole files to its workers in collection order (`make test` passes
    --no-loadscope-reorder: by default it sorts files by their number of tests, which put these
    one-test files of 2 to 5 minutes last, and one worker waited for the other up to 100 s)."""
    pipelines = {item.path for item in items if item.get_closest_marker("kfp_local")}
    items.sort(key=lambda item: item.path not in pipelines)


def pytest_runtest_logstart(nodeid: str) -> None:
    (CRASH_DIR / f"crash-test-{WORKER}.txt").write_text(nodeid + "\n")


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str,
              make: Callable[[Path], object]) -> Path:
    """A session fixture's folder, made by ``make`` once for the whole run: under pytest-xdist
    the first worker to ask makes it in the run's shared temp folder while the others wait on
    its lock (a trained model is seconds to minutes; each worker training its own copy was
    that again, beside the other worker's tests)."""
    if WORKER == "main":
        root = tmp_path_factory.mktemp(name)
        make(root)
        return root
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent / name
    with FileLock(f"{root}.lock"):
        if not (root / ".made").exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            make(root)
            (root / ".made").touch()
    return root


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3 endpoint on loopback: moto's server."""
    from moto.server import ThreadedMotoServer

    from tests.servers import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The endpoint in the environment, as a user's AWS variables, with the bucket "oblivio"."""
    import boto3

    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    if "oblivio" not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket="oblivio")
    return s3_endpoint


@pytest.fixture(scope="session")
def fashion_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Fashion-MNIST in the dataset contract."""
    if not Path(DEFAULT_IDX_DIR, "train-images-idx3-ubyte.gz").exists():
        pytest.fail("Fashion-MNIST IDX files missing: run `make test` (it installs them)")
    return made_once(tmp_path_factory, "fashion-mnist", lambda out: convert(str(out)))


@pytest.fixture(scope="session")
def fm(fashion_mnist: Path):
    """The converted Fashion-MNIST, opened once: splits decode lazily and are shared."""
    from oblivio.data import open_dataset

    return open_dataset(fashion_mnist)


@pytest.fixture()
def rgb_dataset(tmp_path: Path) -> Path:
    return make_rgb_dataset(tmp_path / "rgb")


@pytest.fixture(scope="session")
def trained_rgb(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 4-class RGB dataset and a resnet18 trained on it for 3 epochs (seconds)."""
    from oblivio.training import Recipe, train_to_dir

    def make(root: Path) -> None:
        data = make_rgb_dataset(root / "data", classes=4, per_class=60, size=16)
        train_to_dir(str(data), "resnet18", str(root / "model"),
                     Recipe(epochs=3, batch_size=32, lr=0.05), device="cpu", progress=False)

    root = made_once(tmp_path_factory, "trained-rgb", make)
    return root / "data", root / "model"


@pytest.fixture()
def sqlite_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh MLflow store on SQLite for one test (the laptop default, isolated)."""
    from oblivio.tracking.store import connect

    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("OBLIVIO_HOME", str(tmp_path / "home"))
    connect()
    return uri


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """A real MLflow tracking server (SQLite backend, local artifact root) on loopback."""
    from tests.servers import start_mlflow_server

    with start_mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on loopback (Debian's package, which `make test` installs);
    yields its SQLAlchemy URL. Outside `make test` a machine without it skips these tests."""
    import os

    from tests.servers import postgres_bin, start_postgres

    if postgres_bin() is None:
        if os.environ.get("OBLIVIO_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL missing: `make test` installs Debian's postgresql")
        pytest.skip("PostgreSQL is not installed (make test installs it)")
    with start_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty ledger database: SQLite in a file, or a new database on the session's
    PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    from sqlalchemy import create_engine, text

    server = request.getfixturevalue("postgres")
    name = f"ledger_{tmp_path.name.lower().replace('-', '_')[:40]}"
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture()
def tracked(mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The session's MLflow server as this test's tracking URI, with its own oblivio home."""
    from oblivio.tracking.store import connect

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("OBLIVIO_HOME", str(tmp_path / "home"))
    connect()
    return mlflow_server


@pytest.fixture()
def job(sqlite_mlflow: str) -> str:
    """A pipeline job id whose MLflow run is open, as resolve_model leaves it for later steps."""
    from oblivio.tracking.runs import start_run

    start_run("job-1", "oblivio-unlearning-1", {"forget_classes": "1"})
    return "job-1"


@pytest.fixture()
def class_samples(trained_rgb, tmp_path: Path) -> Path:
    """The sample step's folder for forgetting class 1 from ``trained_rgb`` (small sets)."""
    from oblivio.steps import sample_step

    data, model_dir = trained_rgb
    out = tmp_path / "samples"
    sample_step(str(model_dir), str(data), "1", str(out), retain_per_class=15,
                forget_samples=20, val_per_class=8, val_forget_samples=12)
    return out


@pytest.fixture()
def class_statistics(trained_rgb, class_samples: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Retain and forget statistics of ``class_samples`` (the capture step, twice)."""
    from oblivio.steps import capture_step

    data, model_dir = trained_rgb
    paths = []
    for which in ("retain", "forget"):
        path = tmp_path / f"{which}.safetensors"
        capture_step(str(model_dir), str(data), str(class_samples / f"{which}.parquet"),
                     str(path), device="cpu")
        paths.append(path)
    return paths[0], paths[1]


@pytest.fixture()
def registered(sqlite_mlflow: str, trained_rgb) -> str:
    """``trained_rgb``'s model registered as ``tiny`` version 1, alias champion."""
    import mlflow

    from oblivio.deletion.promotion import register_champion
    from oblivio.tracking.registry import Lineage
    from oblivio.tracking.store import connect

    with mlflow.start_run(experiment_id=connect()):
        register_champion(trained_rgb[1], "tiny", Lineage("trained"))
    return "tiny"


@pytest.fixture()
def projected(trained_rgb, tmp_path: Path) -> Path:
    """``trained_rgb``'s model with class 1 forgotten (a fixed projection pair: no grid)."""
    from oblivio.unlearn.classes.forget import ProjectionSettings, forget_classes

    data, model_dir = trained_rgb
    out = tmp_path / "projected"
    forget_classes(str(model_dir), str(data), "1", str(out),
                   ProjectionSettings(alpha_r=100, alpha_f=3, retain_per_class=15,
                                      forget_samples=20, val_per_class=8), device="cpu",
                   progress=False)
    return out


@pytest.fixture(scope="session")
def memorised(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Noise images with random labels (learnable only by memorising), a model trained to 100%
    on all of train, and one trained without the 24 'forget' rows."""
    import numpy as np

    from oblivio.data.sample_ids import write_sample_ids
    from oblivio.data.write import write_classes, write_split
    from oblivio.training import Recipe, train_to_dir

    def make(root: Path) -> None:
        rng = np.random.default_rng(0)
        data = root / "data"
        for split, n in (("train", 90), ("test", 90)):
            images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
            write_split(str(data), split, [f"noise/{split}/{i:03d}" for i in range(n)],
                        rng.integers(0, 3, n), images)
        write_classes(str(data), "noise", ["a", "b", "c"])
        forget = [f"noise/train/{i:03d}" for i in range(24)]
        write_sample_ids(root / "forget.parquet", forget)
        recipe = Recipe(epochs=20, batch_size=16, lr=0.05, flip=False, label_smoothing=0.0,
                        weight_decay=0.0)
        train_to_dir(str(data), "resnet18", str(root / "saw"), recipe, device="cpu",
                     progress=False)
        train_to_dir(str(data), "resnet18", str(root / "never"), recipe,
                     exclude_ids=str(root / "forget.parquet"), device="cpu", progress=False)

    root = made_once(tmp_path_factory, "mem", make)
    data = root / "data"
    return {"data": data, "ids": root / "forget.parquet", "saw": root / "saw",
            "never": root / "never", "root": root}
