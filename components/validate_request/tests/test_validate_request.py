from collections.abc import Iterator
from pathlib import Path

import pytest

from oblivio.errors import OblivioError
from oblivio_pipeline.components import validate_request

CHOICES = {"class_method": "projection", "instance_method": "match", "alpha_mode": "auto",
           "ratio_mode": "auto", "relearn_steps": 0, "shards": 1, "max_forget_acc": 0.01,
           "max_retain_drop": 0.025, "min_mia_efficacy": 0.9, "max_reestimated_forget_acc": 0.01,
           "instance_max_test_drop": 0.005, "instance_auc_z": 2.576}


@pytest.fixture(scope="module")
def store(trained_rgb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One MLflow store on SQLite with ``trained_rgb``'s model registered as ``tiny``, for the
    whole module: validation only reads the registry (a registration per case was 4 s)."""
    import mlflow

    from oblivio.deletion.promotion import register_champion
    from oblivio.tracking.registry import Lineage
    from oblivio.tracking.store import connect

    root = tmp_path_factory.mktemp("validate")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", uri)
        env.setenv("OBLIVIO_HOME", str(root / "home"))
        with mlflow.start_run(experiment_id=connect()):
            register_champion(trained_rgb[1], "tiny", Lineage("trained"))
    yield uri


@pytest.fixture()
def registered(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The module's store as this test's tracking URI; the model's name."""
    from oblivio.tracking.store import connect

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("OBLIVIO_HOME", str(tmp_path / "home"))
    connect()
    return "tiny"


def check(registered: str, data: Path, classes: str = "1", ids: str = "", **choices) -> str:
    return validate_request.python_func(model_uri=f"models:/{registered}@champion",
                                        dataset_uri=str(data), forget_classes=classes,
                                        forget_ids_uri=ids, **{**CHOICES, **choices})


def test_a_sound_request_names_the_version(registered: str, trained_rgb, tmp_path: Path) -> None:
    data = trained_rgb[0]
    assert check(registered, data) == "1"
    (tmp_path / "ids.txt").write_text("rgb/train/0000\nrgb/train/0061\n")
    assert check(registered, data, "", str(tmp_path / "ids.txt")) == "1"


@pytest.mark.parametrize(("request_", "message"), [
    ({"classes": "9"}, "class 9 out of range"),
    ({"classes": "0,1,2,3"}, "cannot forget every class"),
    ({"class_method": "ssd"}, "class method must be projection or contrast, got 'ssd'"),
    ({"ratio_mode": "grid"}, "ratio mode must be auto or fixed, got 'grid'"),
    ({"relearn_steps": -1}, "relearn steps must be 0 or more \\(0: off\\), got -1"),
    ({"classes": "", "ids": "IDS", "instance_method": "neggrad"},
     "instance method must be match, l2ul or relabel, got 'neggrad'"),
    ({"classes": "", "ids": "TEST_IDS"}, "names test-split sample ids"),
    ({"max_forget_acc": 5.0}, r"--max-forget-acc is a fraction in \[0, 1\]"),
    ({"instance_auc_z": 0.0}, "--instance-auc-z is a positive number"),
    ({"shards": 0}, "shards must be 1 to 256, got 0"),
])
def test_what_no_retry_can_fix_is_one_error(registered: str, trained_rgb, tmp_path: Path,
                                            request_: dict, message: str) -> None:
    (tmp_path / "test-ids.txt").write_text("rgb/test/0001\n")
    (tmp_path / "ids.txt").write_text("rgb/train/0001\n")
    files = {"TEST_IDS": str(tmp_path / "test-ids.txt"), "IDS": str(tmp_path / "ids.txt")}
    if "ids" in request_:
        request_ = {**request_, "ids": files[request_["ids"]]}
    with pytest.raises(OblivioError, match=message):
        check(registered, trained_rgb[0], **request_)


def test_an_unknown_model_is_one_error(sqlite_mlflow: str, trained_rgb) -> None:
    with pytest.raises(OblivioError):
        check("nobody", trained_rgb[0])
