"""Regenerate the tables of docs/benchmarks.md that come from committed bench JSON.

Each generated block sits between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``
and is rewritten from its JSON; the prose around it is left alone. A test fails when a block is
stale. Today the committed JSON is the oracle ledger (``bench/oracles.json``); a bench whose
results are committed adds its block here.

    python bench/tables.py            # rewrite docs/benchmarks.md
    python bench/tables.py --check    # exit 1 if a block is stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
BLOCK = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- end generated -->)", re.DOTALL)
KEYS = ("retain_test_acc", "forget_test_acc", "mia_efficacy_confidence",
        "mia_efficacy_entropy", "mia_entropy_lr_member_rate", "probe_forget_test_acc")


def oracles() -> str:
    """One row per retrain oracle of the ledger: what it left out, where and how long it
    trained, and its evidence (the values every unlearned model is compared with)."""
    ledger = json.loads((ROOT / "bench" / "oracles.json").read_text())
    header = ("| oracle | device | seconds | test acc % (all classes) | "
              + " | ".join(k.replace("_", " ") for k in KEYS) + " |")
    rows = [header, "|" + "---|" * (4 + len(KEYS))]
    for name, entry in ledger.items():
        evidence = entry.get("evidence", {})
        cells = [name, entry.get("device") or "cpu", f"{entry['seconds']:.0f}",
                 f"{100 * entry['test_acc']:.2f}",
                 *(f"{evidence[k]:.3f}" if k in evidence else "-" for k in KEYS)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


GENERATORS: dict[str, Callable[[], str]] = {"oracles": oracles}


def render(text: str) -> str:
    """``text`` with every generated block rewritten."""
    def replace(match: re.Match) -> str:
        name = match.group(2)
        if name not in GENERATORS:
            raise SystemExit(f"docs/benchmarks.md: no generator for block {name!r}")
        return match.group(1) + GENERATORS[name]() + match.group(4)
    return BLOCK.sub(replace, text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report stale blocks")
    args = ap.parse_args()
    text = DOC.read_text()
    fresh = render(text)
    if args.check:
        sys.exit(0 if fresh == text else 1)
    DOC.write_text(fresh)


if __name__ == "__main__":
    main()
