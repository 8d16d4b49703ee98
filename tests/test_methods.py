"""The registry of methods drives the CLI: every method's options exist as options of
``oblivio forget``, an option of another method is refused before anything is loaded, and
``oblivio methods`` lists what the registry holds."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from oblivio.cli import app
from oblivio.errors import OblivioError
from oblivio.unlearn.methods import (
    CLASSES,
    DEFAULTS,
    IDS,
    METHODS,
    check_pipeline_params,
    method,
    method_for,
    pipeline_methods,
)

runner = CliRunner()
FORGET_OPTIONS = {p.name for p in typer.main.get_command(app).commands["forget"].params}


@pytest.mark.parametrize("name", list(METHODS))
def test_every_option_is_a_cli_option_and_a_settings_field(name: str) -> None:
    m = METHODS[name]
    assert set(m.options) <= FORGET_OPTIONS
    assert set(m.options) <= {f.name for f in fields(m.settings)}
    assert m.forgets <= {CLASSES, IDS}


@pytest.mark.parametrize("name", list(METHODS))
def test_every_other_option_is_refused(name: str) -> None:
    m = METHODS[name]
    settings_options = set().union(*(set(x.options) for x in METHODS.values()))
    for foreign in sorted(settings_options - set(m.options)):
        with pytest.raises(OblivioError, match=f"--{foreign.replace('_', '-')} does not apply "
                                               f"to --method {name}"):
            m.settings_from({foreign: 1})
    if m.options:
        given = m.options[-1]
        assert getattr(m.settings_from({given: 7}), given) == 7


def test_auto_picks_the_default_for_what_is_forgotten() -> None:
    assert method_for("auto", "7", None).name == DEFAULTS[CLASSES] == "projection"
    assert method_for("auto", None, "ids.txt").name == DEFAULTS[IDS] == "match"
    with pytest.raises(OblivioError, match="give exactly one of --classes and --forget-ids"):
        method_for("auto", "7", "ids.txt")
    with pytest.raises(OblivioError, match="unknown method 'magic'; use auto or one of"):
        method("magic")
    with pytest.raises(OblivioError, match="contrast forgets whole classes"):
        method_for("contrast", None, "ids.txt")


def test_the_pipeline_branches_come_from_the_registry() -> None:
    assert pipeline_methods(CLASSES) == ("projection", "contrast")
    assert pipeline_methods(IDS) == ("match", "l2ul", "relabel")
    check_pipeline_params({"class_method": "contrast", "alpha_mode": "fixed",
                           "instance_method": "l2ul"})
    with pytest.raises(OblivioError, match="class method must be projection or contrast"):
        check_pipeline_params({"class_method": "anything", "forget_ids_uri": "s3://b/ids"})
    with pytest.raises(OblivioError,
                       match="instance method must be match, l2ul or relabel, got 'x'"):
        check_pipeline_params({"instance_method": "x"})
    with pytest.raises(OblivioError, match="ratio mode must be auto or fixed, got 'grid'"):
        check_pipeline_params({"ratio_mode": "grid"})
    check_pipeline_params({"instance_max_seconds": 0.0})  # no budget
    for bad in (-1.0, float("nan")):
        with pytest.raises(OblivioError, match="instance max seconds must be 0 or more"):
            check_pipeline_params({"instance_max_seconds": bad})


def test_cli_lists_the_methods() -> None:
    result = runner.invoke(app, ["methods"])
    assert result.exit_code == 0
    for name in METHODS:
        assert f"\n{name} " in "\n" + result.stdout
    assert "options: --alpha-r --alpha-f" in result.stdout


def test_cli_refuses_a_foreign_option_before_loading_anything(tmp_path: Path) -> None:
    result = runner.invoke(app, ["forget", "--model", str(tmp_path / "missing"), "--data",
                                 str(tmp_path / "missing"), "--out", str(tmp_path / "out"),
                                 "--classes", "1", "--pgd-iters", "5"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --pgd-iters does not apply to --method projection (its options: --alpha-r, "
        "--alpha-f, --forget-margin, --bn-rounds, --retain-per-class, --forget-samples, "
        "--val-per-class, --val-forget-samples, --column-budget, --forget-target, --seed)")
    assert not (tmp_path / "out").exists()
