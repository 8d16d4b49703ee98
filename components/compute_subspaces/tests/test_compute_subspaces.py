from pathlib import Path

from kfp import dsl

from oblivio.unlearn.classes.statistics import load_statistics
from oblivio.unlearn.classes.subspaces import load_subspaces
from oblivio_pipeline.components import compute_subspaces


def test_one_basis_pair_per_layer(class_statistics: tuple[Path, Path], tmp_path: Path) -> None:
    retain, forget = class_statistics
    out = dsl.Artifact(uri=str(tmp_path / "subspaces.safetensors"))
    compute_subspaces.python_func(retain_statistics=dsl.Artifact(uri=str(retain)),
                                  forget_statistics=dsl.Artifact(uri=str(forget)),
                                  subspaces=out)
    subspaces = load_subspaces(tmp_path / "subspaces.safetensors")
    assert set(subspaces) == set(load_statistics(retain).layers)
    assert out.metadata["layers"] == len(subspaces)
