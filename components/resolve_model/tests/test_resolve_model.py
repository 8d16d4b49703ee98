from pathlib import Path

import pytest
from kfp import dsl

import oblivio
from oblivio.errors import OblivioError
from oblivio.tracking.registry import client
from oblivio.tracking.runs import run_id_of, run_key
from oblivio_pipeline.components import resolve_model

CHOICES = {"deletion_batch": "", "dataset_uri": "data", "forget_classes": "1", "forget_ids_uri": "",
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


def test_each_part_of_a_deletion_batch_gets_its_own_run(registered: str,
                                                        tmp_path: Path) -> None:
    """One batch job runs the pipeline for its classes, then its images: two MLflow runs (the
    second logs other params, which one run could not take)."""
    for part, classes, ids in (("b1.classes", "1", ""), ("b1.ids", "", "ids.parquet")):
        resolve_model.python_func(model_uri=f"models:/{registered}@champion", job_id="job-7",
                                  job_name="batch 7", model=dsl.Model(uri=str(tmp_path / part)),
                                  **{**CHOICES, "deletion_batch": part,
                                     "forget_classes": classes, "forget_ids_uri": ids})
    runs = [client().get_run(run_id_of(run_key("job-7", p))) for p in ("b1.classes", "b1.ids")]
    assert runs[0].info.run_id != runs[1].info.run_id
    assert [r.info.run_name for r in runs] == ["batch 7 b1.classes", "batch 7 b1.ids"]
    assert [r.data.params["forget_classes"] for r in runs] == ["1", ""]


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
