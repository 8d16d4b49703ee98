"""make demo's sequence end to end on a small world, with the default gates: the next class, then
a seeded draw of training images forgotten from the champion the class left, both honoured by one
batch. Real Fashion-MNIST images (the first 600 training and 100 test images of each class), a
resnet18 trained as make demo trains it, a real ``mlflow server`` and the pipeline under kfp's
local runner."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from oblivio.cli import app
from oblivio.data.fashion_mnist import CLASSES, DEFAULT_IDX_DIR, NAME, load_split
from oblivio.data.write import write_classes, write_split
from oblivio.ledger.store import Ledger
from oblivio.tracking.registry import CHAMPION, client, lineage
from tests.test_pipeline import register_original

pytestmark = pytest.mark.kfp_local  # pipelines under kfp.local: make test-fast leaves them out

runner = CliRunner()


@pytest.fixture(scope="module")
def small_fashion(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The first 600 training and 100 test images of each class, with their full-set ids (room
    for the class method's default 250 forget and 250 validation images of a class), and
    resnet18 trained on them with the default recipe for 3 epochs."""
    from oblivio.training import recipe_for, train_to_dir

    if not Path(DEFAULT_IDX_DIR, "train-images-idx3-ubyte.gz").exists():
        pytest.fail("Fashion-MNIST IDX files missing: run `make test` (it installs them)")
    root = tmp_path_factory.mktemp("small-fashion")
    data = root / "data"
    for split, per_class in (("train", 600), ("test", 100)):
        images, labels = load_split(DEFAULT_IDX_DIR, split)
        rows = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class]
                                       for c in range(len(CLASSES))]))
        write_split(str(data), split, [f"{NAME}/{split}/{i:06d}" for i in rows], labels[rows],
                    images[rows])
    write_classes(str(data), NAME, CLASSES)
    train_to_dir(str(data), "resnet18", str(root / "model"),
                 recipe_for("resnet18", epochs=3, seed=0), device="cpu", progress=False)
    return data, root / "model"


def test_the_demo_honours_a_class_then_images_from_the_champion_it_left(
        tracked: str, small_fashion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from oblivio_pipeline.demo import draw_ids

    data, model_dir = small_fashion
    monkeypatch.setenv("OBLIVIO_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    register_original("demo", model_dir)
    first_draw = draw_ids("demo", str(data), 32, seed=3)
    assert first_draw == draw_ids("demo", str(data), 32, seed=3)  # seeded: the same request
    assert first_draw != draw_ids("demo", str(data), 32, seed=4)

    result = runner.invoke(app, ["demo", "--model-name", "demo", "--data", str(data),
                                 "--seed", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.stderr or result.stdout
    summary = [line for line in result.stdout.splitlines() if line.startswith("demo: ")]
    assert re.fullmatch(r"demo: class 7 \(request req-\w+, ticket demo-3-1-class\) honoured by "
                        r"version 2", summary[0]), summary
    assert re.fullmatch(r"demo: 32 training images \(request req-\w+, ticket demo-3-1-images\) "
                        r"honoured by version 3", summary[1]), summary
    assert "champion (version 3) honours it" in result.stdout  # the audit, for both requests
    assert {r.state for r in Ledger().find(model_name="demo")} == {"honoured"}
    assert str(client().get_model_version_by_alias("demo", CHAMPION).version) == "3"
    rows = {r["version"]: r for r in lineage("demo")}
    assert rows["3"]["parent"] == "2" and rows["3"]["method"] == "match"  # from the class's
    assert rows["3"]["gate"] == rows["2"]["gate"] == "passed"
    # the record verifies; a champion moved by hand is caught, and put right by promote
    drill = result.stdout[result.stdout.index("verify: ok ("):].splitlines()
    assert drill[0].startswith("verify: ok (") and "hash chain intact" in drill[0]
    assert "champion of demo is version 1, but the last move oblivio recorded is to version 3" \
        in drill[2]
    assert drill[-2] == "drill: demo version 3 is now champion (was version 1)"
    assert drill[-1] == "verify: ok again"

    # a second run asks for new images: none the champion has forgotten
    again = draw_ids("demo", str(data), 32, seed=3)
    assert not set(again) & set(first_draw)
