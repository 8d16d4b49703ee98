"""The library's layers (docs/architecture.md): each folder imports only the ones below it, at
the top of a module or inside a function alike, no module imports one that imports it back, and
nothing imports kfp. An import hidden in a function to dodge a cycle is caught as an upward
one; the control is a tree with an upward import and a cycle planted in it."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "oblivio"
#: bottom to top; a module of a layer may import its own layer and those before it
LAYERS = [("errors", "home", "runner", "shards"), ("data", "ledger"), ("models", "tensorfile"),
          ("training",), ("evaluation",), ("unlearn",), ("tracking",), ("deletion",),
          ("steps",), ("cli",), ("__init__",)]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _imports(root: Path) -> dict[str, set[str]]:
    """Module -> the oblivio modules (or packages) it imports, anywhere in its body."""
    found: dict[str, set] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        targets = found.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets |= {(node.module, a.name) for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {(a.name, None) for a in node.names}
    # ``from package import module`` imports the module, not the package's __init__
    return {m: {f"{mod}.{name}" if f"{mod}.{name}" in found else mod for mod, name in targets}
            for m, targets in found.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def violations(root: Path) -> list[str]:
    graph = _imports(root)
    known = {m: {t for t in targets if t in graph and t != m} for m, targets in graph.items()}
    wrong = [f"{m} imports kfp" for m, targets in graph.items()
             if any(t == "kfp" or t.startswith("kfp.") for t in targets)]
    wrong += [f"{m} imports {t}, a layer above it" for m, targets in known.items()
              for t in sorted(targets) if RANK[_layer(t)] > RANK[_layer(m)]]
    wrong += [f"cycle: {' -> '.join(cycle)}" for cycle in _cycles(known)]
    return wrong


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each module that can reach itself (a depth-first search)."""
    found, done = [], set()
    for start in sorted(graph):
        stack, seen = [(start, [start])], {start}
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start and start not in done:
                    found.append(path + [start])
                    done.update(path)
                elif nxt not in seen and nxt not in done:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    return found


def test_every_folder_of_the_library_has_a_layer() -> None:
    assert {_layer(m) for m in _imports(SRC)} <= set(RANK)


def test_the_library_imports_only_downward_and_has_no_cycle() -> None:
    assert violations(SRC) == []


def test_an_upward_import_or_a_cycle_is_caught(tmp_path: Path) -> None:
    planted = tmp_path / "oblivio"
    shutil.copytree(SRC, planted, ignore=shutil.ignore_patterns("__pycache__"))
    with (planted / "ledger" / "store.py").open("a") as f:
        f.write("\n\ndef _dodge():\n    from oblivio.deletion.rule import unhonoured\n")
    with (planted / "unlearn" / "tuning.py").open("a") as f:
        f.write("\nfrom oblivio.unlearn.baselines.run import BASELINES  # noqa\n")
    found = violations(planted)
    assert "oblivio.ledger.store imports oblivio.deletion.rule, a layer above it" in found
    assert any(v.startswith("cycle:") and "oblivio.unlearn.tuning" in v for v in found)
    assert len(found) >= 2


@pytest.mark.parametrize("module", ["oblivio.unlearn.baselines.scrub", "oblivio.deletion.purge"])
def test_the_graph_sees_the_modules_that_matter(module: str) -> None:
    assert module in _imports(SRC)  # the walk reads packages nested two deep
