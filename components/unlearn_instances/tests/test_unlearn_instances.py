from pathlib import Path

import pytest
from kfp import dsl

import oblivio
from oblivio.data.sample_ids import ids_sha256
from oblivio.errors import OblivioError
from oblivio.steps import sample_instances_step
from oblivio_pipeline.components import unlearn_instances


@pytest.mark.parametrize("method", ["match", "l2ul", "relabel"])
def test_forgets_the_request_with_each_method_and_records_it(trained_rgb, tmp_path: Path,
                                                            method: str) -> None:
    data, model_dir = trained_rgb
    ids = ["rgb/train/0000", "rgb/train/0061"]
    (tmp_path / "request.txt").write_text("\n".join(ids) + "\n")
    sample_instances_step(str(model_dir), str(data), str(tmp_path / "request.txt"),
                          str(tmp_path / "samples"))
    unlearned = dsl.Model(uri=str(tmp_path / "unlearned"))
    unlearn_instances.python_func(model=dsl.Model(uri=str(model_dir)), dataset_uri=str(data),
                                  samples=dsl.Dataset(uri=str(tmp_path / "samples")),
                                  method=method, max_steps=3, ablation="adv+imp",
                                  max_epochs=3, seed=0, device="cpu",
                                  unlearned=unlearned)
    prov = oblivio.load_model(tmp_path / "unlearned").config["provenance"]
    assert prov["forgotten_ids_sha256"] == ids_sha256(ids) and prov["method"] == method
    assert prov["steps"] <= 3  # one batch of two images: a step per l2ul, relabel epoch
    assert unlearned.metadata["forget_ids_sha256"] == ids_sha256(ids)
    assert unlearned.metadata["forget_ids_count"] == 2
    assert unlearned.metadata["method"] == method


@pytest.mark.parametrize("method", ["l2ul", "relabel"])  # match: no step on these images
def test_a_budget_in_seconds_ends_the_steps(trained_rgb, tmp_path: Path, method: str) -> None:
    """The pipeline's instance_max_seconds: far below one step, so the first step is the last,
    long before a cap it could not reach; the model and the artifact record that the budget,
    not the method, ended it. 0 is no budget: the (small) cap ends the steps."""
    data, model_dir = trained_rgb
    (tmp_path / "request.txt").write_text("rgb/train/0000\nrgb/train/0061\n")
    sample_instances_step(str(model_dir), str(data), str(tmp_path / "request.txt"),
                          str(tmp_path / "samples"))
    runs = {}
    for budget, cap in ((1e-6, 500), (0.0, 3)):
        unlearned = dsl.Model(uri=str(tmp_path / f"unlearned-{budget}"))
        unlearn_instances.python_func(
            model=dsl.Model(uri=str(model_dir)), dataset_uri=str(data),
            samples=dsl.Dataset(uri=str(tmp_path / "samples")), method=method,
            max_steps=cap, ablation="adv+imp", max_epochs=cap, seed=0, device="cpu",
            unlearned=unlearned, max_seconds=budget)
        prov = oblivio.load_model(unlearned.path).config["provenance"]
        runs[budget] = prov, unlearned.metadata
    prov, metadata = runs[1e-6]
    assert prov["params"]["max_seconds"] == 1e-6
    assert prov["steps"] == 1 and prov["deadline_hit"] and metadata["deadline_hit"]
    prov, metadata = runs[0.0]
    assert prov["params"]["max_seconds"] is None
    assert prov["steps"] > 1 and not metadata["deadline_hit"]


def test_a_class_method_is_refused_before_any_work(trained_rgb, tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    (tmp_path / "request.txt").write_text("rgb/train/0000\n")
    sample_instances_step(str(model_dir), str(data), str(tmp_path / "request.txt"),
                          str(tmp_path / "samples"))
    with pytest.raises(OblivioError, match="projection forgets whole classes"):
        unlearn_instances.python_func(
            model=dsl.Model(uri=str(model_dir)), dataset_uri=str(data),
            samples=dsl.Dataset(uri=str(tmp_path / "samples")), method="projection",
            max_steps=3, ablation="adv+imp", max_epochs=3, seed=0, device="cpu",
            unlearned=dsl.Model(uri=str(tmp_path / "u")))
    assert not (tmp_path / "u").exists()


def test_class_samples_are_refused(trained_rgb, class_samples: Path, tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    with pytest.raises(OblivioError, match="name classes, not a deletion request"):
        unlearn_instances.python_func(
            model=dsl.Model(uri=str(model_dir)), dataset_uri=str(data),
            samples=dsl.Dataset(uri=str(class_samples)), method="match", max_steps=3,
            ablation="adv+imp", max_epochs=3,
            seed=0, device="cpu", unlearned=dsl.Model(uri=str(tmp_path / "u")))
    assert not (tmp_path / "u").exists()
