"""The layout users of Kubeflow's component catalogue expect, kept true as steps are added:
one folder per component with its README and tests, each pipeline beside its compiled YAML,
both shipped in the wheel, and no reference to a document a clone does not have."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = sorted(p.name for p in (ROOT / "components").iterdir()
                    if (p / "component.py").exists())
PIPELINES = sorted(p.name for p in (ROOT / "pipelines").iterdir() if (p / "pipeline.py").exists())


def test_pyproject_ships_every_component_and_pipeline() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]
    assert {f"oblivio_pipeline.components.{c}" for c in COMPONENTS} <= set(packages)
    assert {f"oblivio_pipeline.pipelines.{p}" for p in PIPELINES} <= set(packages)
    listed = {p.rsplit(".", 1)[1] for p in packages
              if p.startswith("oblivio_pipeline.components.")}
    assert listed == set(COMPONENTS)


@pytest.mark.parametrize("name", COMPONENTS)
def test_each_component_has_its_readme_and_tests(name: str) -> None:
    from kfp.dsl.base_component import BaseComponent

    import oblivio_pipeline.components as components

    folder = ROOT / "components" / name
    assert (folder / "tests" / f"test_{name}.py").exists()
    component = getattr(components, name)
    assert isinstance(component, BaseComponent)
    readme = (folder / "README.md").read_text()
    assert readme.startswith(f"# {name}\n")
    spec = component.component_spec
    for param in [*(spec.inputs or {}), *(spec.outputs or {})]:  # a new input is documented
        assert f"| `{param}` |" in readme, f"{name}/README.md lacks {param}"
    assert "python_func" in (folder / "tests" / f"test_{name}.py").read_text()


@pytest.mark.parametrize("name", PIPELINES)
def test_each_pipeline_sits_beside_its_yaml(name: str) -> None:
    assert (ROOT / "pipelines" / name / "pipeline.yaml").exists()


def test_no_reference_to_a_file_a_clone_lacks() -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    sources = [f for f in files if f.endswith((".py", ".md", ".toml", ".yaml", "Makefile"))]
    # design documents: docs/<name>.md, upper-case <NAME>.md files, Markdown links to .md files
    cited = re.compile(r"\b(docs/[a-z_]+\.md|[A-Z][A-Z_]+\.md)\b|\]\(([^)#]+\.md)\)")
    for path in sources:
        for match in cited.finditer((ROOT / path).read_text(errors="ignore")):
            target = match.group(1) or match.group(2)
            if target == "README.md" and not match.group(2):
                continue
            assert (ROOT / target).exists() or (ROOT / Path(path).parent / target).exists(), (
                f"{path} cites {target}, which a clone does not have")


@pytest.mark.slow
def test_wheel_carries_components_pipeline_yaml_and_readmes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    names = zipfile.ZipFile(next(tmp_path.glob("oblivio-*.whl"))).namelist()
    for name in COMPONENTS:
        assert f"oblivio_pipeline/components/{name}/component.py" in names
        assert f"oblivio_pipeline/components/{name}/README.md" in names
    for name in PIPELINES:
        assert f"oblivio_pipeline/pipelines/{name}/pipeline.yaml" in names


def _pins(path: Path) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", path.read_text(), re.MULTILINE)
    return dict(pins)


def test_the_image_lock_pins_the_same_versions_as_the_dev_lock() -> None:
    runtime, dev = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements-dev.lock")
    assert {"torch", "kfp", "mlflow", "timm"} <= set(runtime)
    assert {"pytest", "ruff", "uv"} <= set(dev) - set(runtime)
    assert {name: dev.get(name) for name in runtime} == runtime
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[\[<>=!~ ]", d, maxsplit=1)[0].lower()
                for d in project["dependencies"]}
    assert declared <= {name.lower() for name in runtime}  # the lock covers pyproject


def test_generated_benchmark_tables_are_current() -> None:
    """docs/benchmarks.md and the README's results rows are what their JSON says; the control:
    a row edited by hand is caught."""
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "tables.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"{proc.stderr.strip()}: python bench/tables.py"
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    assert "<!-- generated: oracles -->\n| oracle |" in doc
    readme = (ROOT / "README.md").read_text()
    assert "<!-- generated: readme_pool -->\n| model |" in readme
    sys.path.insert(0, str(ROOT / "bench"))
    from tables import render

    block = readme.split("<!-- generated: readme_pool -->\n")[1].split("<!-- end")[0]
    row = block.splitlines()[2]
    tampered = readme.replace(row, row.replace("|", "| 1", 1))
    assert tampered != readme and render(tampered) == readme


def test_what_touches_no_model_starts_without_torch(tmp_path: Path) -> None:
    """``oblivio --help``, ``oblivio methods``, an option given to the wrong method, the
    ledger's commands and the pipeline steps that read no model (claim, settle and complete a
    batch, plan shards, record the outcome) took 3-5 s while torch, timm and torchvision
    loaded; they need none of them. Run in a fresh interpreter, so nothing is loaded before."""
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "import oblivio.deletion.batches, oblivio.shards, oblivio.tracking.runs\n"
        "from oblivio.cli import app\n"
        "for args, shown in ((['--help'], 'requests'), (['requests', 'list'], 'request'),\n"
        "                    (['methods'], 'projection')):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0 and shown in result.output, result.output\n"
        "from oblivio.errors import OblivioError\n"
        "from oblivio.unlearn.methods import method\n"
        "try:\n"
        "    method('neggrad+').settings_from({'alpha_r': 3.0})\n"
        "except OblivioError as exc:\n"
        "    assert 'does not apply' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('a foreign option was taken')\n"
        "print(sorted({'torch', 'timm', 'torchvision', 'mlflow', 'kfp'} & set(sys.modules)))\n")
    env = {**os.environ, "OBLIVIO_HOME": str(tmp_path), "OBLIVIO_LEDGER_URL": ""}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, env=env)
    assert done.stdout.strip() == "[]"
