"""Class forgetting by energy contrast (oblivio.unlearn.classes.contrast; docs/algorithms.md
§1.7)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import oblivio
from oblivio.cli import app
from oblivio.unlearn.classes.contrast import RIDGE, ContrastProjector, contrast_basis
from oblivio.unlearn.classes.forget import ContrastSettings, forget_by_contrast
from oblivio.unlearn.classes.layers import layer_blocks
from oblivio.unlearn.classes.ratio_selection import later_rounds, select_ratio
from oblivio.unlearn.classes.statistics import LayerStat, Statistics, capture_statistics
from tests.test_class_forgetting import assert_forgot_class, split_of

runner = CliRunner()


def inputs(n: int, dims: list[int], d: int, seed: int) -> torch.Tensor:
    x = torch.zeros(n, d)
    x[:, dims] = torch.rand(n, len(dims), generator=torch.Generator().manual_seed(seed))
    return x


def linear_case(d: int = 8) -> tuple[nn.Linear, ContrastProjector, torch.Tensor, torch.Tensor]:
    """Retain inputs span e0..e2; forget inputs span e3, e4 and share e0 with the retain set."""
    layer = nn.Linear(d, 5)
    retain, forget = inputs(300, [0, 1, 2], d, 0), inputs(300, [0, 3, 4], d, 1)
    model = nn.Sequential(nn.Flatten(), layer)

    def stats(x: torch.Tensor) -> Statistics:
        images = (x * 255).round().to(torch.uint8).view(len(x), 1, 1, d)
        return capture_statistics(model, split_of(images), np.arange(len(x)), 64, progress=False)

    projector = ContrastProjector.from_statistics(model, stats(retain), stats(forget))
    return layer, projector, (retain * 255).round() / 255, (forget * 255).round() / 255


def test_removes_forget_only_directions_and_keeps_retain_outputs() -> None:
    layer, projector, retain, forget = linear_case()
    with torch.no_grad():
        before_r, before_f = layer(retain), layer(forget)
        w0, bias = layer.weight.clone(), layer.bias.clone()
        projector.apply(4.0)
        after_r, after_f = layer(retain), layer(forget)
    torch.testing.assert_close(after_r, before_r, rtol=0, atol=1e-4)
    assert torch.equal(layer.bias, bias)
    # the forget-only directions are removed: the edited layer maps them to zero
    _, _, basis, _ = projector.layers["1"]
    assert basis.ratio.shape == (1, 2) and basis.ratio.min() > 100  # the rest: under 2
    with torch.no_grad():
        torch.testing.assert_close(layer.weight @ basis.dual[0, :, :2], torch.zeros(5, 2),
                                   rtol=0, atol=1e-5)
    assert (after_f - before_f).norm() > 0.5 * (before_f - bias).norm()
    assert projector.removed(4.0) == 2
    projector.restore()
    assert torch.equal(layer.weight, w0)


def test_ratios_are_generalised_eigenvalues_of_per_column_moments() -> None:
    gen = torch.Generator().manual_seed(0)
    fr, ff = torch.randn(1, 40, 6, generator=gen), torch.randn(1, 30, 6, generator=gen) * 2
    retain, forget = LayerStat(40, gram=(fr.mT @ fr).double()), LayerStat(30, factor=ff)
    basis = contrast_basis(retain, forget, floor=0.0)
    cr = retain.gram[0] / 40
    reg = cr + RIDGE * cr.trace() / 6 * torch.eye(6, dtype=torch.float64)
    cf = forget.as_gram()[0] / 30
    v, ratio = basis.v[0].double(), basis.ratio[0]
    torch.testing.assert_close(v.T @ reg @ v, torch.eye(6, dtype=torch.float64), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(cf @ v, reg @ v * ratio, atol=1e-4, rtol=1e-4)
    assert bool((ratio[:-1] >= ratio[1:]).all())  # largest first
    torch.testing.assert_close(basis.dual[0].double(), reg @ v, atol=1e-4, rtol=1e-4)


def test_factor_form_works_in_the_columns_span_and_matches_the_gram_form() -> None:
    """Fewer columns than fan-in: the basis lives in their span; directions outside it carry no
    energy in either set and are left alone, exactly as the full-space form leaves them."""
    gen = torch.Generator().manual_seed(1)
    d = 30
    fr = torch.zeros(1, 12, d)
    fr[..., :8] = torch.randn(1, 12, 8, generator=gen)
    ff = torch.zeros(1, 9, d)
    ff[..., 10:18] = torch.randn(1, 9, 8, generator=gen)
    thin = contrast_basis(LayerStat(12, factor=fr), LayerStat(9, factor=ff))
    full = contrast_basis(LayerStat(12, gram=(fr.mT @ fr).double()),
                          LayerStat(9, gram=(ff.mT @ ff).double()))
    w = torch.randn(5, d, generator=gen)
    for basis in (thin, full):
        edited = w - (w @ basis.dual[0]) @ basis.v[0].T
        outside = torch.zeros(d)
        outside[20] = 1.0
        torch.testing.assert_close(edited @ outside, w @ outside)  # no energy there: kept
        torch.testing.assert_close(edited @ fr[0].T, w @ fr[0].T, atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(edited @ ff[0].T, torch.zeros(5, 9), atol=1e-3, rtol=0)
    assert thin.v.shape[1] == full.v.shape[1] == d


def test_empty_statistics_and_bad_threshold_are_refused() -> None:
    with pytest.raises(oblivio.OblivioError, match="non-empty"):
        contrast_basis(LayerStat(0, gram=torch.zeros(1, 3, 3, dtype=torch.float64)),
                       LayerStat(4, gram=torch.eye(3, dtype=torch.float64)[None]))
    _, projector, _, _ = linear_case()
    with pytest.raises(oblivio.OblivioError, match="must be positive"):
        projector.apply(0.0)


def selection_case(first: nn.Module | None = None) -> tuple[nn.Module, object, np.ndarray,
                                                          ContrastProjector]:
    """A tiny classifier whose class-1 evidence sits on its own input directions (behind an
    optional first layer)."""
    d = 8
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(60)
    x = torch.zeros(180, d)
    x[:, 7] = torch.rand(180, generator=gen)  # a direction every class uses alike
    for c, dims in ((0, [0, 1]), (1, [3, 4]), (2, [5, 6])):
        x[(labels == c).nonzero(), dims] += 0.4 + 0.6 * torch.rand(60, 2, generator=gen)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8).view(180, 1, 1, d)
    split = split_of(images, labels)
    head = nn.Linear(d, 3)
    with torch.no_grad():
        head.weight.copy_(torch.stack([torch.eye(d)[dims].sum(0) for dims in
                                       ([0, 1], [3, 4], [5, 6])]))
        head.bias.copy_(torch.tensor([0.3, 0.0, 0.3]))  # class 1 wins only on its evidence
    model = nn.Sequential(nn.Flatten(), *([first] if first is not None else []), head)
    rows = np.arange(180)
    retain_rows, forget_rows = rows[labels.numpy() != 1][::2], rows[labels.numpy() == 1][::2]
    projector = ContrastProjector.from_statistics(
        model, capture_statistics(model, split, retain_rows, 64, progress=False),
        capture_statistics(model, split, forget_rows, 64, progress=False))
    return model, split, rows, projector


def test_selection_requires_forgetting_then_keeps_most() -> None:
    """The chosen threshold forgets class 1 on validation and keeps the rest."""
    _, split, rows, projector = selection_case()
    best, grid = select_ratio(projector, split, rows[1::2], [1], progress=False)
    assert best.forget_acc <= 0.01 and best.retain_acc == 1.0
    assert len({p.removed for p in grid}) == len(grid)  # no edit scored twice
    assert projector.applied == (best.tau, 1)


def test_layer_blocks_follow_the_network() -> None:
    vit = ["net.patch_embed.proj", "net.blocks.0.attn.qkv", "net.blocks.0.mlp.fc2",
           "net.blocks.1.attn.qkv", "net.blocks.11.mlp.fc1", "net.head"]
    assert layer_blocks(vit) == [["net.patch_embed.proj"], vit[1:3], vit[3:4], vit[4:5],
                                 ["net.head"]]
    resnet = ["net.conv1", "net.layer1.0.conv1", "net.layer1.0.conv2",
              "net.layer2.0.downsample.0", "net.fc"]
    assert layer_blocks(resnet) == [["net.conv1"], resnet[1:3], resnet[3:4], ["net.fc"]]


def test_depth_edits_only_the_last_blocks_and_restores_the_rest() -> None:
    first = nn.Linear(8, 8)
    with torch.no_grad():
        first.weight.copy_(torch.eye(8) + 0.1)
    model, split, rows, projector = selection_case(first)
    head = model[2]
    w_first, w_head = first.weight.clone(), head.weight.clone()
    assert projector.blocks == [["1"], ["2"]]
    projector.apply(4.0, 1)
    assert torch.equal(first.weight, w_first) and not torch.equal(head.weight, w_head)
    projector.apply(4.0)
    assert not torch.equal(first.weight, w_first)
    projector.apply(4.0, 1)  # a shallower depth puts the earlier layers back
    assert torch.equal(first.weight, w_first)
    assert projector.removed(4.0, 1) < projector.removed(4.0)
    with pytest.raises(oblivio.OblivioError, match="blocks must be between 1 and 2"):
        projector.apply(4.0, 3)


def test_selection_tries_depths_from_the_last_block_and_prefers_the_shallowest() -> None:
    """The head alone forgets class 1 here, so editing the first layer too can only tie:
    the shallower edit wins, and every scored point records its depth."""
    first = nn.Linear(8, 8)
    with torch.no_grad():
        first.weight.copy_(torch.eye(8))
        first.bias.zero_()
    model, split, rows, projector = selection_case(first)
    best, grid = select_ratio(projector, split, rows[1::2], [1], progress=False, blocks=[1, 2])
    assert best.blocks == 1 and best.forget_acc <= 0.01 and best.retain_acc == 1.0
    depths = [p.blocks for p in grid]
    assert depths == sorted(depths) and depths[0] == 1
    assert torch.equal(model[1].weight, torch.eye(8))  # the first layer is left as it was
    with pytest.raises(oblivio.OblivioError, match="blocks must be between 1 and 2"):
        select_ratio(projector, split, rows[1::2], [1], progress=False, blocks=[1, 5])


class WithSide(nn.Module):
    """A network whose first block (``side``) sees only the direction every class uses alike:
    it has no contrast direction, so editing it too is the same edit as the head alone."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.side = nn.Linear(1, 3)
        self.net = net
        with torch.no_grad():
            self.side.weight.zero_()
            self.side.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + self.side(x.flatten(1)[:, 7:])


def test_a_deeper_edit_equal_to_a_shallower_one_is_not_scored_again() -> None:
    net, split, rows, _ = selection_case()
    model = WithSide(net)
    labels = split.labels.numpy()
    sets = rows[labels != 1][::2], rows[labels == 1][::2]
    retain, forget = (capture_statistics(model, split, r, 64, progress=False) for r in sets)
    forwards = []
    model.register_forward_hook(lambda *_: forwards.append(1))
    runs = []
    for blocks in ([1], [1, 2]):
        projector = ContrastProjector.from_statistics(model, retain, forget)
        assert projector.blocks == [["side"], ["net.1"]]
        assert projector.edit(2.0, 2) == projector.edit(2.0, 1)
        forwards.clear()
        best, grid = select_ratio(projector, split, rows[1::2], [1], progress=False,
                                  blocks=blocks)
        runs.append((best, grid, len(forwards)))
    (_, one, one_forwards), (best, both, both_forwards) = runs
    assert [p.blocks for p in both] == [1] * len(one) + [2] * len(one)
    for shallow, deep in zip(both, both[len(one):]):
        assert (shallow.tau, shallow.retain_acc, shallow.forget_acc) == (
            deep.tau, deep.retain_acc, deep.forget_acc)
    assert both_forwards == one_forwards > 0  # the depth-2 sweep ran no image through it
    assert best.blocks == 1


def test_later_rounds_capture_each_layer_once_per_edited_model() -> None:
    net, split, rows, _ = selection_case()
    model = WithSide(net)
    labels = split.labels.numpy()
    sets = rows[labels != 1][::2], rows[labels == 1][::2]
    projector = ContrastProjector.from_statistics(
        model, *(capture_statistics(model, split, r, 64, progress=False) for r in sets))
    asked = []

    def capture(layers: list[str], depth: int | None) -> tuple[Statistics, Statistics]:
        asked.append(layers)
        return tuple(capture_statistics(model, split, r, 64, progress=False, layers=layers)
                     for r in sets)

    next_round = later_rounds(projector, capture)
    projector.apply(64.0, 1)
    state = (projector.edit(64.0, 1),)
    for depth in (1, 2, 2):
        next_round(state, 64.0, depth).restore()
    assert asked == [["net.1"], ["side"]]
    edited = projector.model.net[1].weight.clone()
    later = next_round(state, 64.0, 1)  # the cached bases, applied to the model as it is now
    assert set(later.layers) == {"net.1"} and later.removed(64.0) == later.edit(64.0)[0][1]
    later.restore()
    assert torch.equal(projector.model.net[1].weight, edited)
    with pytest.raises(oblivio.OblivioError, match="no projectable layer named nope"):
        capture_statistics(model, split, sets[0], 64, progress=False, layers=["nope"])


def test_forget_by_contrast_end_to_end_and_deterministic(trained_rgb, tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    outs = []
    for name in ("a", "b"):
        prov = forget_by_contrast(str(model_dir), str(data), "1", str(tmp_path / name),
                                  ContrastSettings(retain_per_class=20, forget_samples=30,
                                                   val_per_class=10, val_forget_samples=20),
                                  device="cpu", progress=False)
        outs.append(oblivio.load_model(tmp_path / name))
    assert outs[0].config["weights_sha256"] == outs[1].config["weights_sha256"]
    assert prov["method"] == "contrast" and prov["ratio_mode"] == "auto"
    chosen = (prov["ratio"], prov["rounds"], prov["blocks"])
    grid = prov["ratio_grid"]
    assert chosen in [(p["tau"], p["rounds"], p["blocks"]) for p in grid]
    assert [p["blocks"] for p in grid] == sorted(p["blocks"] for p in grid)  # shallow first
    assert 1 <= prov["blocks"] <= prov["blocks_total"] == 10  # resnet18: stem, 8 blocks, fc
    assert prov["edited_layers"][-1] == "net.fc" and len(prov["edited_layers"]) >= 1
    for before, point in zip(grid, grid[1:]):
        if point["rounds"] == 2:  # only after a first round that did not forget enough
            assert before["tau"] == point["tau"] and before["rounds"] == 1
            assert before["forget_acc"] > 0.01 and point["removed"] > before["removed"]
    assert prov["forgotten_classes"] == [1] and prov["removed_directions"] > 0
    assert set(prov["seconds"]) >= {"capture", "subspaces",
                                    "projection", "total"}
    assert_forgot_class(model_dir, data, outs[0], 1)


def test_cli_contrast_fixed_ratio_and_bad_input(trained_rgb, tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    base = ["forget", "--model", str(model_dir), "--data", str(data), "--method", "contrast",
            "--device", "cpu", "--retain-per-class", "20", "--forget-samples", "30"]
    weights = []
    for rounds in ("1", "3"):
        out = tmp_path / f"u{rounds}"
        result = runner.invoke(app, [*base, "--classes", "2", "--ratio", "8", "--rounds", rounds,
                                     "--out", str(out)])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["ratio"] == 8.0 and summary["rounds"] == int(rounds)
        config = json.loads((out / "config.json").read_text())
        assert config["provenance"]["ratio_mode"] == "fixed"
        assert config["provenance"]["ratio_grid"] == []
        weights.append(config["weights_sha256"])
    assert weights[0] != weights[1]  # later rounds remove what the first one left
    result = runner.invoke(app, [*base, "--classes", "2", "--ratio", "4", "--blocks", "1",
                                 "--out", str(tmp_path / "head")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["blocks"] == 1
    parent = oblivio.load_model(model_dir).state_dict()
    changed = {k for k, v in oblivio.load_model(tmp_path / "head").state_dict().items()
               if not torch.equal(v, parent[k])}
    assert changed == {"net.fc.weight"}  # only the last block, the classifier, was edited
    for args, message in (
        (["--classes", "2", "--ratio", "1"], "error: the ratio threshold must exceed 1"),
        (["--classes", "2", "--ratio", "nan"], "error: --ratio must be a finite number, got nan"),
        (["--classes", "2", "--ratio", "many"], "error: --ratio takes 'auto' or a number"),
        (["--classes", "2", "--rounds", "0"], "error: rounds must be at least 1"),
        (["--classes", "2", "--blocks", "last"], "error: --blocks takes 'auto' or a number"),
        (["--classes", "2", "--blocks", "11"], "error: blocks must be between 1 and 10"),
        (["--classes", "9"], "error: class 9 out of range"),
        (["--forget-ids", str(tmp_path / "ids.txt")], "error: contrast forgets whole classes"),
    ):
        out = tmp_path / "bad"
        result = runner.invoke(app, [*base, *args, "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().startswith(message)
        assert len(result.stderr.strip().splitlines()) == 1
        assert not out.exists()


def test_report_plots_the_ratio_grid_with_the_chosen_point() -> None:
    from oblivio.evaluation.report import _selection_plot

    grid = [{"tau": 8.0, "rounds": 1, "removed": 3, "retain_acc": None, "forget_acc": 0.2},
            {"tau": 8.0, "rounds": 2, "removed": 5, "retain_acc": 0.9, "forget_acc": 0.0},
            {"tau": 4.0, "rounds": 1, "removed": 9, "retain_acc": 0.7, "forget_acc": 0.0}]
    ax = _selection_plot({"ratio_grid": grid, "ratio": 8.0, "rounds": 2}).axes[0]
    assert ax.get_title() == "ratio grid (3 points scored)"
    assert [t.get_text() for t in ax.texts] == ["8x2", "4x1"]
    assert ax.get_legend() is not None  # the chosen point is circled


def test_cli_contrast_that_removes_nothing_writes_nothing(trained_rgb, tmp_path: Path) -> None:
    data, model_dir = trained_rgb
    out = tmp_path / "same"
    result = runner.invoke(app, ["forget", "--model", str(model_dir), "--data", str(data),
                                 "--method", "contrast", "--device", "cpu", "--classes", "2",
                                 "--ratio", "1e9", "--rounds", "1", "--out", str(out)])
    assert result.exit_code == 2, result.output
    last = result.stderr.strip().splitlines()[-1].split("\r")[-1]  # after the progress bars
    assert last.startswith("error: no input direction carries 1e+09x more forget")
    assert not out.exists()
