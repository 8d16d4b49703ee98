from pathlib import Path

import pytest
from kfp import dsl

import oblivio
from oblivio.errors import OblivioError
from oblivio_pipeline.components import apply_contrast


def run(trained_rgb, samples: Path, stats: tuple[Path, Path], out: Path, ratio_mode: str,
        blocks: int = 0) -> tuple[dsl.Model, Path]:
    data, model_dir = trained_rgb
    unlearned = dsl.Model(uri=str(out / "unlearned"))
    grid = out / "grid.md"
    out.mkdir(parents=True, exist_ok=True)
    apply_contrast.python_func(
        model=dsl.Model(uri=str(model_dir)), dataset_uri=str(data),
        retain_statistics=dsl.Artifact(uri=str(stats[0])),
        forget_statistics=dsl.Artifact(uri=str(stats[1])),
        samples=dsl.Dataset(uri=str(samples)), ratio_mode=ratio_mode, ratio=4.0, rounds=1,
        blocks=blocks, forget_target=0.01, device="cpu", unlearned=unlearned,
        ratio_grid=dsl.Markdown(uri=str(grid)))
    return unlearned, grid


def test_fixed_ratio_on_the_last_blocks(trained_rgb, class_samples: Path,
                                        class_statistics: tuple[Path, Path],
                                        tmp_path: Path) -> None:
    unlearned, grid = run(trained_rgb, class_samples, class_statistics, tmp_path, "fixed", 3)
    prov = oblivio.load_model(tmp_path / "unlearned").config["provenance"]
    assert prov["method"] == "contrast" and prov["ratio_mode"] == "fixed"
    assert unlearned.metadata == {"ratio": 4.0, "rounds": 1, "blocks": 3, "forget_classes": [1]}
    assert grid.read_text().startswith(f"chosen: ratio 4, 1 round(s), the last 3 of "
                                       f"{prov['blocks_total']} blocks")


def test_a_mode_typo_is_one_error_before_any_work(trained_rgb, tmp_path: Path) -> None:
    missing = (tmp_path / "retain.safetensors", tmp_path / "forget.safetensors")
    with pytest.raises(OblivioError, match="ratio_mode must be auto or fixed, got 'grid'"):
        run(trained_rgb, tmp_path / "samples", missing, tmp_path, "grid")
    assert not (tmp_path / "unlearned").exists()
