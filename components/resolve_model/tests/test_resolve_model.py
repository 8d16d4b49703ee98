from pathlib import Path

import pytest
from kfp import dsl

import oblivio
from oblivio.errors import OblivioError
from oblivio.tracking.registry import client
from oblivio.tracking.runs import run_id_of
from oblivio_pipeline.components import resolve_model

CHOICES = {"dataset_uri": "data", "forget_classes": "1", "forget_ids_uri": "",
           "class_method": "projection", "alpha_mode": "auto", "ratio_mode": "auto", "seed": 0}


def test_downloads_the_champion_and_opens_the_run(registered: str, trained_rgb,
                                                  tmp_path: Path) -> None:
    model = dsl.Model(uri=str(tmp_path / "model"))
    version = resolve_model.python_func(model_uri=f"models:/{registered}@champion",
                                        job_id="job-9", job_name="run 9", model=model,
                                        **CHOICES)
    assert version == "1" and model.metadata == {"name": registered, "version": "1"}
    loaded = oblivio.load_model(tmp_path / "model")
    assert loaded.config["weights_sha256"] == oblivio.load_model(
        trained_rgb[1]).config["weights_sha256"]
    params = client().get_run(run_id_of("job-9")).data.params
    assert params["class_method"] == "projection" and params["parent_version"] == "1"


@pytest.mark.parametrize(("choice", "message"), [
    ({"class_method": "ssd"}, "class method must be projection or contrast, got 'ssd'"),
    ({"alpha_mode": "best"}, "alpha mode must be auto or fixed, got 'best'"),
])
def test_a_choice_typo_stops_before_any_work(registered: str, tmp_path: Path, choice: dict,
                                             message: str) -> None:
    with pytest.raises(OblivioError, match=message):
        resolve_model.python_func(model_uri=f"models:/{registered}@champion", job_id="job-x",
                                  job_name="x", model=dsl.Model(uri=str(tmp_path / "m")),
                                  **{**CHOICES, **choice})
    assert not (tmp_path / "m").exists()
    with pytest.raises(OblivioError, match="no MLflow run"):
        run_id_of("job-x")
