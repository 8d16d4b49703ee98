from pathlib import Path

import pytest
from kfp import dsl

import oblivio
from oblivio.errors import OblivioError
from oblivio.steps import subspaces_step
from oblivio_pipeline.components import apply_projection


@pytest.fixture()
def subspaces(class_statistics: tuple[Path, Path], tmp_path: Path) -> dsl.Artifact:
    path = tmp_path / "subspaces.safetensors"
    subspaces_step(str(class_statistics[0]), str(class_statistics[1]), str(path))
    return dsl.Artifact(uri=str(path))


def run(trained_rgb, samples: Path, subspaces: dsl.Artifact, tmp_path: Path,
        alpha_mode: str) -> tuple[dsl.Model, Path]:
    data, model_dir = trained_rgb
    unlearned = dsl.Model(uri=str(tmp_path / "unlearned"))
    grid = tmp_path / "grid.md"
    apply_projection.python_func(
        model=dsl.Model(uri=str(model_dir)), dataset_uri=str(data), subspaces=subspaces,
        samples=dsl.Dataset(uri=str(samples)), alpha_mode=alpha_mode, alpha_r=100.0,
        alpha_f=3.0, forget_target=0.01, device="cpu", unlearned=unlearned,
        alpha_grid=dsl.Markdown(uri=str(grid)))
    return unlearned, grid


def test_auto_mode_chooses_on_validation_and_shows_the_grid(trained_rgb, class_samples: Path,
                                                            subspaces, tmp_path: Path) -> None:
    unlearned, grid = run(trained_rgb, class_samples, subspaces, tmp_path, "auto")
    prov = oblivio.load_model(tmp_path / "unlearned").config["provenance"]
    assert prov["method"] == "projection" and prov["forgotten_classes"] == [1]
    assert unlearned.metadata["alpha"] == prov["alpha"]
    text = grid.read_text()
    chosen = f"chosen: alpha_r {prov['alpha']['retain']:g}, alpha_f {prov['alpha']['forget']:g}"
    assert text.startswith(chosen)
    assert text.count("\n| ") == len(prov["alpha_grid"]) + 1  # header + one row per pair


def test_fixed_mode_and_a_mode_typo(trained_rgb, class_samples: Path, subspaces,
                                    tmp_path: Path) -> None:
    unlearned, _ = run(trained_rgb, class_samples, subspaces, tmp_path / "fixed", "fixed")
    assert unlearned.metadata["alpha"] == {"retain": 100.0, "forget": 3.0}
    with pytest.raises(OblivioError, match="alpha_mode must be auto or fixed, got 'best'"):
        run(trained_rgb, class_samples, subspaces, tmp_path / "typo", "best")
    assert not (tmp_path / "typo" / "unlearned").exists()
