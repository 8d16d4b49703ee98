"""Regenerate the tables of docs/benchmarks.md and the README's results that come from
committed bench JSON.

Each generated block sits between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``
and is rewritten from its JSON; the prose around it is left alone. A test fails when a block is
stale. The committed JSON: the oracle ledger (``bench/oracles.json``) and the results of the
benches under ``bench/results/``; a bench whose results are committed adds its block here.

    python bench/tables.py            # rewrite docs/benchmarks.md and README.md
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
DOCS = (ROOT / "docs" / "benchmarks.md", ROOT / "README.md")
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


def _mean_worst(values: list[float], worst: Callable[[list[float]], float]) -> str:
    return f"{sum(values) / len(values):.2f} ({worst(values):.2f})"


def instance(name: str = "instance_forgetting.json") -> str:
    """Instance forgetting (bench/instance_forgetting.py): per request size and method, the
    mean (worst) over draws, the oracle's values beside the method's."""
    result = json.loads((ROOT / "bench" / "results" / name).read_text())
    records, retrain = result["records"], result["retrain_seconds"]
    header = ["k", "method", "draws", "forget acc % (oracle)", "forget loss (oracle)",
              "test drop", "retain-train drop", "loss-LR % (oracle)",
              "loss AUC (worst distance to 0.5)", "gate (one-sided)", "seconds", "% of retrain"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for k in dict.fromkeys(r["k"] for r in records):
        at_k = [r for r in records if r["k"] == k]
        by = {(r["method"], r["seed"]): r for r in at_k}
        for method in dict.fromkeys(r["method"] for r in at_k):
            rs = [r for r in at_k if r["method"] == method]
            base = [by[("original", r["seed"])] for r in rs]
            oracle = [by[("oracle", r["seed"])] for r in rs]
            drops = [b["test_acc"] - r["test_acc"] for b, r in zip(base, rs)]
            retain = [b["retain_train_acc"] - r["retain_train_acc"] for b, r in zip(base, rs)]
            off = [abs(r["auc"] - 0.5) for r in rs]
            passed = sum(d <= 0.5 and o <= r["auc_band"] for d, o, r in zip(drops, off, rs))
            one_sided = sum(d <= 0.5 and r["auc"] - 0.5 <= r["auc_band"]
                            for d, r in zip(drops, rs))
            secs = [r["seconds"] for r in rs if "seconds" in r]
            mean = sum(secs) / len(secs) if secs else None
            rows.append("| " + " | ".join([
                str(k), method, str(len(rs)),
                f"{_avg(rs, 'forget_acc'):.2f} ({_avg(oracle, 'forget_acc'):.2f})",
                f"{_avg(rs, 'forget_loss'):.3f} ({_avg(oracle, 'forget_loss'):.3f})",
                _mean_worst(drops, max), _mean_worst(retain, max),
                f"{_avg(rs, 'loss_lr'):.1f} ({_avg(oracle, 'loss_lr'):.1f})",
                f"{_avg(rs, 'auc'):.3f} ({max(off):.3f})",
                f"{passed}/{len(rs)} ({one_sided}/{len(rs)})",
                f"{mean:.1f}" if mean is not None else "-",
                f"{100 * mean / retrain:.1f}" if mean is not None else "-"]) + " |")
    return "\n".join(rows) + "\n"


POOL_RESULT = "pool-2000-e20-k3.json"
#: The same world rebuilt on another CPU (2026-12-08): match's stop rules on its models.
POOL_REBUILT = "pool-2000-e20-k3-rebuilt.json"


def _pool_rows(request: dict) -> list[tuple[str, list[dict], list[bool], list[float],
                                             list[float]]]:
    """(name, evidence per model, passed per model, test drops, cost shares): the held retrains
    (the control that must pass), the untouched originals (the control that must fail), then
    each method over the models it unlearned."""
    held = [{"evidence": e, "reasons": []} for e in request["held_retrains"]]
    rows = [("held retrains (control: must pass)", held, [], []),
            ("original, untouched (control: must fail)", request["original"], [], [])]
    for method, runs in request["methods"].items():
        rows.append((method, runs, [r["test_drop_points"] for r in runs],
                     [100 * r["cost_vs_retrain"] for r in runs]))
    return [(name, [r["evidence"] for r in runs], [not r["reasons"] for r in runs], drops, cost)
            for name, runs, drops, cost in rows]


def pool_table(name: str = POOL_RESULT) -> str:
    """bench/pool.py: per request and model, per-example evidence against the pool (mean
    (worst) over the models trained with the request, each unlearned and scored without the
    pool member it came from)."""
    result = json.loads((ROOT / "bench" / "results" / name).read_text())
    header = ["request", "model", "pool gate", "TPR@1% FPR, memorised (worst)",
              "TPR@5%, memorised", "TPR@1%, all", "epsilon, memorised", "KLoM, memorised",
              "mean phi, memorised (retrain / with)", "test drop (worst)", "% of a retrain"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for request, record in result["requests"].items():
        part = "memorised" if record["memorised_by_pool"] else "all"
        for model, evidence, passed, drops, cost in _pool_rows(record):
            mem = [e[part] for e in evidence]
            rows.append("| " + " | ".join([
                f"{request} ({record['ids']} images, {record['memorised_by_pool']} memorised)",
                model, f"{sum(passed)}/{len(passed)}" if passed else "-",
                _mean_worst([m["tpr_at_1pct_fpr"] for m in mem], max),
                f"{_avg(mem, 'tpr_at_5pct_fpr'):.2f}",
                f"{_avg([e['all'] for e in evidence], 'tpr_at_1pct_fpr'):.2f}",
                f"{_avg(mem, 'epsilon_mean'):.2f}", f"{_avg(mem, 'klom_mean'):.2f}",
                f"{_avg(mem, 'mean_phi'):.2f} ({mem[0]['retrain_mean_phi']:.2f} / "
                f"{mem[0]['with_mean_phi']:.2f})",
                _mean_worst(drops, max) if drops else "-",
                f"{sum(cost) / len(cost):.1f}" if cost else "-"]) + " |")
    return "\n".join(rows) + "\n"


def readme_pool(name: str = POOL_RESULT) -> str:
    """The README's rows of bench/pool.py: the two controls, the default for deletion
    requests (match) and the method with the fewest memorised images still recognised, each
    request side by side: models passing the pool's gate, TPR at 1% FPR on the memorised part,
    test drop, cost."""
    result = json.loads((ROOT / "bench" / "results" / name).read_text())
    requests = list(result["requests"])
    table = {r: {row[0]: row for row in _pool_rows(rec)} for r, rec in result["requests"].items()}
    first = table[requests[0]]

    def tpr(request: str, model: str) -> float:
        part = "memorised" if result["requests"][request]["memorised_by_pool"] else "all"
        return _avg([e[part] for e in table[request][model][1]], "tpr_at_1pct_fpr")
    methods = [m for m in first if m in result["requests"][requests[0]]["methods"]]
    best = min(methods, key=lambda m: tpr(requests[0], m))
    chosen = [*list(first)[:2], *dict.fromkeys(["match", best])]
    header = ["model", *(f"{r}: passed, TPR@1% memorised" for r in requests),
              f"test drop ({requests[0]})", "% of a retrain (under load: a ranking)"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in chosen:
        cells = [model]
        for request in requests:
            row = table[request].get(model)
            cells.append("-" if row is None else
                         f"{sum(row[2])}/{len(row[2])}, " * bool(row[2]) +
                         f"{tpr(request, model):.2f}")
        drops, cost = first[model][3], first[model][4]
        cells += [_mean_worst(drops, max) if drops else "-",
                  f"{sum(cost) / len(cost):.1f}" if cost else "-"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def shadows_table(name: str = POOL_RESULT) -> str:
    """bench/pool.py: the same models judged by the training set's shadows (trained once for
    every request) beside the request's pool (the truth): how often each gate passes, and the
    TPR at 1% FPR on the part each finds memorised. Full retrains (the pool's k and held ones)
    are the control that must pass the shadows."""
    result = json.loads((ROOT / "bench" / "results" / name).read_text())
    header = ["request", "model", "shadow gate", "TPR@1% FPR, shadows' memorised (worst)",
              "pool gate", "TPR@1%, pool's memorised", "test drop (worst)"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for request, record in result["requests"].items():
        if "shadows" not in record:
            continue
        pool_part = "memorised" if record["memorised_by_pool"] else "all"
        shadow_part = "memorised" if record["shadows"]["memorised"] else "all"
        label = (f"{request} ({record['ids']} images; memorised: shadows "
                 f"{record['shadows']['memorised']}, pool {record['memorised_by_pool']})")
        runs = [("full retrains (control: must pass)", record["retrains_by_shadows"], None),
                ("original, untouched (control: must fail)", record["original"], None),
                *((m, r, [x["test_drop_points"] for x in r])
                  for m, r in record["methods"].items() if "shadows" in r[0])]
        for model, judged, drops in runs:
            passed = [not r["shadow_reasons"] for r in judged]
            pool = [r for r in judged if "evidence" in r]
            rows.append("| " + " | ".join([
                label, model, f"{sum(passed)}/{len(passed)}",
                _mean_worst([r["shadows"][shadow_part]["tpr_at_1pct_fpr"] for r in judged],
                            max),
                f"{sum(not r['reasons'] for r in pool)}/{len(pool)}" if pool else "-",
                f"{_avg([r['evidence'][pool_part] for r in pool], 'tpr_at_1pct_fpr'):.2f}"
                if pool else "-",
                _mean_worst(drops, max) if drops else "-"]) + " |")
    return "\n".join(rows) + "\n"


def _avg(records: list[dict], key: str) -> float:
    return sum(r[key] for r in records) / len(records)


def _judged(runs: list[dict], part: str) -> tuple[str, str, str]:
    """Models passing the pool's gate, TPR at 1% FPR on ``part`` and test drop, mean (worst)."""
    if not runs:
        return "-", "-", "-"
    return (f"{sum(not r['reasons'] for r in runs)}/{len(runs)}",
            _mean_worst([r["evidence"][part]["tpr_at_1pct_fpr"] for r in runs], max),
            _mean_worst([r["test_drop_points"] for r in runs], max))


def pool_budget(name: str = "pool-2000-e20-k3-budget10.json") -> str:
    """bench/pool.py --budget: every method with the same wall-clock budget, beside the same
    method on its own budget (the pool table's JSON): models passing the pool's gate, TPR at
    1% FPR on the memorised part, test drop, and the seconds spent."""
    budgeted = json.loads((ROOT / "bench" / "results" / name).read_text())
    measured = json.loads((ROOT / "bench" / "results" / POOL_RESULT).read_text())
    header = ["request", "method", "pool gate", "own budget",
              "TPR@1%, memorised, mean (worst)", "own budget", "test drop (worst)",
              "own budget", "seconds (runs the budget ended)", "own budget"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for request, record in budgeted["requests"].items():
        part = "memorised" if record["memorised_by_pool"] else "all"
        for method, runs in record["methods"].items():
            own = measured["requests"][request]["methods"].get(method, [])
            spent = (f"{_avg(runs, 'seconds'):.1f} "
                     f"({sum(r['deadline_hit'] for r in runs)}/{len(runs)})")
            rows.append("| " + " | ".join([
                request, method,
                *(x for pair in zip(_judged(runs, part), _judged(own, part)) for x in pair),
                spent, f"{_avg(own, 'seconds'):.1f}" if own else "-"]) + " |")
    return "\n".join(rows) + "\n"


def sharding() -> str:
    """bench/sharding.py: the seconds of one shard of capture and of the training-split
    prediction, per image count and shard count, and the reduce where it was timed."""
    records = json.loads((ROOT / "bench" / "results" / "sharding.json").read_text())["records"]
    base = {r["images"]: r for r in records if r["shards"] == 1}
    header = ["images", "shards", "images per shard", "capture s (per 1k images)",
              "capture s vs 1 shard", "merge s", "predict s (per 1k images)",
              "predict s vs 1 shard", "gather s"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in records:
        n, shards, one = r["images"], r["shards"], base[r["images"]]
        per = -(-n // shards)
        cells = [f"{n:,}", str(shards), f"{per:,}"]
        for step in ("capture", "predict"):
            sec = r[step]["shard_seconds"]
            cells += [f"{sec:.1f} ({1000 * sec / per:.2f})",
                      f"{sec / one[step]['shard_seconds']:.2f}"]
            if step == "capture":
                cells.append(_reduce(r[step]))
        cells.append(_reduce(r["predict"]))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _reduce(step: dict) -> str:
    return f"{step['reduce_seconds']:.2f}" if "reduce_seconds" in step else "-"


EVIDENCE_KEYS = ("retain_test_acc", "mia_efficacy_confidence", "mia_efficacy_entropy",
                 "mia_efficacy_m_entropy", "mia_entropy_lr_member_rate", "mia_loss_lr_cv_acc",
                 "probe_forget_test_acc", "relearn_forget_test_acc")


def _steps(value: int | None) -> str:
    return ">64" if value is None else str(value)


def evidence(name: str = "evidence-resnet18-default.json") -> str:
    """bench/evidence.py: per forgotten class, the unlearned model's value and the oracle's
    (in brackets) of each attack, the probe and relearning; relearning steps of the original,
    the unlearned model and the oracle; then the mean absolute gap to the oracle."""
    result = json.loads((ROOT / "bench" / "results" / name).read_text())
    header = ["class", "forget test acc", *(k.replace("_", " ") for k in EVIDENCE_KEYS),
              "relearn steps: original / unlearned / oracle"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in result["classes"]:
        u, o = r["unlearned"], r.get("oracle", {})
        cells = [str(r["class"]), f"{u['forget_test_acc']:.3f}",
                 *(f"{u[k]:.3f} ({o[k]:.3f})" if k in o else f"{u[k]:.3f} (-)"
                   for k in EVIDENCE_KEYS),
                 " / ".join([_steps(r["original"]["relearn_steps"]), _steps(u["relearn_steps"]),
                             _steps(o["relearn_steps"]) if "relearn_steps" in o else "-"])]
        rows.append("| " + " | ".join(cells) + " |")
    gaps = result["gaps"]
    rows.append("| mean abs gap to oracle | | " + " | ".join(
        f"{gaps[k]:.3f}" if k in gaps else "-" for k in EVIDENCE_KEYS) + " | |")
    return "\n".join(rows) + "\n"


DEPTH_KEYS = {"mia_efficacy_confidence": "MIA confidence", "mia_efficacy_entropy": "MIA entropy",
              "mia_efficacy_m_entropy": "MIA m-entropy",
              "mia_entropy_lr_member_rate": "entropy-LR member rate",
              "mia_loss_lr_cv_acc": "loss-LR", "probe_forget_test_acc": "probe"}


def baselines(name: str) -> str:
    """bench/class_baselines.py: per method, over the classes that have a retrain row, retain
    and forget test accuracy, seconds, and each attack's and the probe's mean absolute gap to
    that class's retrain (the depth of the forgetting, every method on one scale). The
    retrains' seconds are left out: the ledger's oracles trained on different machines."""
    records = json.loads((ROOT / "bench" / "results" / name).read_text())
    retrain = {r["class"]: r for r in records if r["method"] == "retrain"}
    header = ["method", "classes", "retain test acc %", "forget test acc % (worst)", "seconds",
              *(f"{label} gap" for label in DEPTH_KEYS.values()), "mean gap"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in dict.fromkeys(r["method"] for r in records):
        rs = [r for r in records if r["method"] == method and r["class"] in retrain]
        if not rs:
            continue
        gaps = [sum(abs(r[k] - retrain[r["class"]][k]) for r in rs) / len(rs)
                for k in DEPTH_KEYS]
        gap_cells = (["-"] * (len(gaps) + 1) if method == "retrain"
                     else [*(f"{g:.3f}" for g in gaps), f"{sum(gaps) / len(gaps):.3f}"])
        secs = [r["seconds"] for r in rs if r["seconds"] is not None and method != "retrain"]
        forget = [100 * r["forget_test_acc"] for r in rs]
        rows.append("| " + " | ".join([
            method, str(len(rs)), f"{_avg(rs, 'retain_test_acc') * 100:.2f}",
            f"{sum(forget) / len(forget):.2f} ({max(forget):.2f})",
            f"{sum(secs) / len(secs):.1f}" if secs else "-",
            *gap_cells]) + " |")
    return "\n".join(rows) + "\n"


def bn_rounds(name: str = "bn_rounds.json") -> str:
    """bench/bn_rounds.py: per class, retain / forget test accuracy of the original, the
    projection without and with the batch-norm round and the retrain, each model's also after
    batch norm is re-estimated on kept images, and the projections' seconds."""
    result = json.loads((ROOT / "bench" / "results" / name).read_text())
    header = ["class", "original", "original, re-estimated", "rounds 0", "rounds 0, re-estimated",
              "rounds 1", "rounds 1, re-estimated", "retrain", "seconds rounds 0 / 1"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def pair(q: dict) -> str:
        return f"{q['retain']:.2f} / {q['forget']:.1f}"
    for r in result["records"]:
        o, r0, r1 = r["original"], r["rounds0"], r["rounds1"]
        rows.append("| " + " | ".join([
            str(r["class"]), pair(o), pair(o["after_attack"]), pair(r0), pair(r0["after_attack"]),
            pair(r1), pair(r1["after_attack"]), pair(r["retrain"]) if "retrain" in r else "-",
            f"{r0['seconds']:.1f} / {r1['seconds']:.1f}"]) + " |")
    recs = result["records"]

    def mean_worst(key: str, side: str, attack: bool, worst: Callable) -> str:
        vals = [(r[key]["after_attack"] if attack else r[key])[side] for r in recs]
        return f"{sum(vals) / len(vals):.2f} ({worst(vals):.2f})"
    cells = ["mean (worst)"]
    for key in ("original", "rounds0", "rounds1"):
        for attack in (False, True):
            cells.append(f"{mean_worst(key, 'retain', attack, min)} / "
                         f"{mean_worst(key, 'forget', attack, max)}")
    with_retrain = [r for r in recs if "retrain" in r]
    cells.append(f"{sum(r['retrain']['retain'] for r in with_retrain) / len(with_retrain):.2f}"
                 if with_retrain else "-")
    cells.append(" / ".join(f"{sum(r[k]['seconds'] for r in recs) / len(recs):.1f}"
                            for k in ("rounds0", "rounds1")))
    rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def reestimate_gate(names: tuple[str, ...], methods: dict[str, str],
                    gate: float = 1.0) -> str:
    """bench/bn_rounds.py over several result files of one base: per class, each method's
    forget test accuracy in % before / after batch norm is re-estimated on kept images, then
    the mean, the worst, and on how many classes each passes the ``gate`` (%) both ways."""
    by_class: dict[int, dict] = {}
    for name in names:
        for r in json.loads((ROOT / "bench" / "results" / name).read_text())["records"]:
            by_class.setdefault(r["class"], {}).update(r)
    shown = {key: label for key, label in methods.items()
             if all(key in r for r in by_class.values())}
    rows = ["| class | " + " | ".join(shown.values()) + " |", "|" + "---|" * (len(shown) + 1)]
    for c, r in sorted(by_class.items()):
        rows.append(f"| {c} | " + " | ".join(
            f"{r[k]['forget']:.1f} / {r[k]['after_attack']['forget']:.1f}" for k in shown) + " |")
    recs = list(by_class.values())
    for label, agg in (("mean", lambda v: sum(v) / len(v)), ("worst", max)):
        rows.append(f"| {label} | " + " | ".join(
            f"{agg([r[k]['forget'] for r in recs]):.2f} / "
            f"{agg([r[k]['after_attack']['forget'] for r in recs]):.2f}" for k in shown) + " |")
    rows.append(f"| classes within the {gate:g}% gate (forget / re-estimated) | " + " | ".join(
        f"{sum(r[k]['forget'] <= gate for r in recs)} / "
        f"{sum(r[k]['after_attack']['forget'] <= gate for r in recs)}" for k in shown) + " |")
    return "\n".join(rows) + "\n"


def round_stop(name: str = "bn_rounds-stop-xeon.json") -> str:
    """bench/bn_rounds.py --methods rounds1 default: per class, the default's rounds and its
    validation forget accuracy after each, then retain / forget test accuracy (%) and the
    forget accuracy once batch norm is re-estimated, for exactly one round and for the
    default, beside the original's."""
    recs = json.loads((ROOT / "bench" / "results" / name).read_text())["records"]
    header = ["class", "original retain / forget", "1 round: retain / forget / re-estimated",
              "default: rounds (validation forget % after each)",
              "default: retain / forget / re-estimated"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def triple(q: dict) -> str:
        return f"{q['retain']:.2f} / {q['forget']:.1f} / {q['after_attack']['forget']:.1f}"
    for r in recs:
        d = r["default"]
        checks = ", ".join(f"{100 * v:.1f}" for v in d["bn_rounds_validation_forget"])
        rows.append(f"| {r['class']} | {r['original']['retain']:.2f} / "
                    f"{r['original']['forget']:.1f} | {triple(r['rounds1'])} | "
                    f"{d['bn_rounds']} ({checks}) | {triple(d)} |")

    def summary(k: str, mean: bool) -> str:
        retain = [r[k]["retain"] for r in recs]
        forget = [r[k]["forget"] for r in recs]
        attack = [r[k]["after_attack"]["forget"] for r in recs]
        if mean:
            return " / ".join(f"{sum(v) / len(v):.2f}" for v in (retain, forget, attack))
        return f"{min(retain):.2f} / {max(forget):.1f} / {max(attack):.1f}"
    rounds = [r["default"]["bn_rounds"] for r in recs]
    for label, mean in (("mean", True), ("worst", False)):
        counted = sum(rounds) / len(rounds) if mean else max(rounds)
        rows.append(f"| {label} | | {summary('rounds1', mean)} | {counted:.1f} | "
                    f"{summary('default', mean)} |")
    return "\n".join(rows) + "\n"


def known_pair(name: str = "class_speed-known-pair.json") -> str:
    """bench/class_speed.py --known-pair: per class, seconds end to end of the default, of
    NegGrad+ and of the projection given the pair the default chose, and the two ratios."""
    result = json.loads((ROOT / "bench" / "results" / name).read_text())
    header = ["class", "default s", "neggrad+ s", "known pair s", "default / neggrad+",
              "known pair / neggrad+", "known pair in-process: capture / subspaces / "
              "projection / total s"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in result["records"]:
        st = r["known pair"]["stages"]
        rows.append("| " + " | ".join([
            str(r["class"]), *(f"{r[n]['median_seconds']:.1f}"
                               for n in ("default", "neggrad+", "known pair")),
            f"{r['ratio']:.2f}", f"{r['known_pair_ratio']:.2f}",
            " / ".join(f"{st[k]:.1f}" for k in ("capture", "subspaces", "projection", "total"))
        ]) + " |")
    s = result["summary"]
    rows.append(f"| mean (worst) | | | | {s['ratio_mean']:.2f} ({s['ratio_worst']:.2f}) | "
                f"{s['known_pair_ratio_mean']:.2f} ({s['known_pair_ratio_worst']:.2f}) | |")
    return "\n".join(rows) + "\n"


def speed(name: str) -> str:
    """bench/class_speed.py: per class, seconds end to end of the default and of NegGrad+,
    their ratio, the quality the bar asks for, and the default's in-process stages."""
    result = json.loads((ROOT / "bench" / "results" / name).read_text())
    header = ["class", "default s", "neggrad+ s", "ratio", "default forget %",
              "default retain drop", "neggrad+ forget %", "neggrad+ retain drop",
              "default in-process: capture / alpha grid and projection / batch-norm round / "
              "total s"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in result["records"]:
        d, n, st = r["default"], r["neggrad+"], r["default"]["stages"]
        rows.append("| " + " | ".join([
            str(r["class"]), f"{d['median_seconds']:.1f}", f"{n['median_seconds']:.1f}",
            f"{r['ratio']:.2f}", f"{d['forget']:.1f}", f"{d['retain_drop']:.2f}",
            f"{n['forget']:.1f}", f"{n['retain_drop']:.2f}",
            " / ".join(f"{st.get(k, 0.0):.1f}"
                       for k in ("capture", "projection", "bn_rounds", "total"))]) + " |")
    s = result["summary"]
    rows.append(f"| mean (worst) | | | {s['ratio_mean']:.2f} ({s['ratio_worst']:.2f}) | "
                f"({s['default_forget_worst']:.1f}) | {s['default_retain_drop_mean']:.2f} "
                f"({s['default_retain_drop_worst']:.2f}) | | | |")
    return "\n".join(rows) + "\n"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def demo_runs(name: str = "demo_runs.json") -> str:
    """bench/demo_runs.py: each make demo run, its exit status and wall time, and per request
    the version that honoured it with the evidence its gate read."""
    result = json.loads((ROOT / "bench" / "results" / name).read_text())
    header = ["run", "exit", "seconds", "original test %", "class: version, forget % "
              "(re-estimated), retain drop", "images: version, match steps, test drop "
              "(points), loss AUC (band)"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in result["runs"]:
        new = [v for v in r["versions"] if v["method"] != "trained"][-2:]
        cls = next((v for v in new if v["forget_classes"]), None)
        ids = next((v for v in new if v["forget_ids_sha256"]), None)
        first = r["versions"][0]
        cells = [r["run"], str(r["rc"]), f"{r['seconds']:.0f}",
                 _pct(first.get("test_acc"))]
        cells.append("-" if cls is None else
                     f"v{cls['version']} class {cls['forget_classes']}, "
                     f"{_pct(cls['forget_test_acc'])} ({_pct(cls['reestimated_forget_test_acc'])})"
                     f", {_pct(cls['original_retain_test_acc'] - cls['retain_test_acc'])}")
        cells.append("-" if ids is None else
                     f"v{ids['version']}, {ids['steps']}, "
                     f"{_pct(ids['original_retain_test_acc'] - ids['retain_test_acc'])}, "
                     f"{ids['mia_loss_auc']:.3f} (0.5 +- {2.576 * ids['mia_loss_auc_sd']:.3f})")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def demo_gate(name: str = "demo_gate.json") -> str:
    """bench/demo_gate.py: per seed, test accuracy of the one-epoch original, its retrain
    without 32 images and match, the drops, the loss-attack AUC of each, and which fail the
    default deletion gates; then the retrains' mean and worst drop."""
    result = json.loads((ROOT / "bench" / "results" / name).read_text())
    roles = ("original", "oracle", "model")
    header = ["seed", "original test %", "retrain drop", "match drop (steps)",
              "loss AUC: original / retrain / match (band)", "fail the default gates"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in result["seeds"]:
        failing = [f"{ {'original': 'original', 'oracle': 'retrain', 'model': 'match'}[k]}: "
                   f"{'; '.join(v)}" for k, v in r["failures_at_default_gates"].items() if v]
        rows.append("| " + " | ".join([
            str(r["seed"]), _pct(r["test_acc"]["original"]), _pct(r["drop"]["oracle"]),
            f"{_pct(r['drop']['model'])} ({r['match_steps']})",
            " / ".join(f"{r['auc'][k]:.3f}" for k in roles) + f" (+- {2.576 * r['auc_sd']:.3f})",
            "<br>".join(failing) or "none"]) + " |")
    drops = [r["drop"]["oracle"] for r in result["seeds"]]
    rows.append(f"| retrains: mean (worst) | | {_pct(sum(drops) / len(drops))} "
                f"({_pct(max(drops))}) | | | |")
    return "\n".join(rows) + "\n"


def ledger_race(name: str = "ledger_race.json") -> str:
    """The ledger's batch protocol raced, fenced and (the control) unfenced."""
    run = json.loads((ROOT / "bench" / "results" / name).read_text())
    keys = ("batches", "takeovers", "honours", "refused_writes", "violations",
            "parts_counted_twice", "empty_claimed_batches")
    rows = ["| database | fence | seconds | " + " | ".join(k.replace("_", " ") for k in keys)
            + " |", "|" + "---|" * (3 + len(keys))]
    for r in run["rows"]:
        rows.append(f"| {r['database']} | {'on' if r['fenced'] else 'off (control)'} | "
                    f"{r['seconds']:.0f} | " + " | ".join(str(r[k]) for k in keys) + " |")
    return "\n".join(rows) + "\n"


GENERATORS: dict[str, Callable[[], str]] = {
    "oracles": oracles, "instance": instance, "evidence_default": evidence,
    "speed_known_pair": known_pair, "bn_rounds": bn_rounds,
    "reestimate_gate": lambda: reestimate_gate(
        ("bn_rounds-cpu-base.json", "bn_rounds-contrast-cpu-base.json",
         "bn_rounds-baselines-cpu-base.json"),
        {"original": "original", "rounds1": "projection, 1 round (the default's)",
         "rounds0": "projection, bn_rounds 0", "contrast": "contrast", "neggrad+": "NegGrad+",
         "salun": "SalUn"}),
    "round_stop": round_stop,
    "speed_bn_round": lambda: speed("class_speed-bn-round.json"),
    "speed_bn_cap": lambda: speed("class_speed-bn-cap.json"),
    "speed_stop_xeon": lambda: speed("class_speed-xeon-stop.json"),
    "baselines_cuda": lambda: baselines("class_baselines-resnet18-cuda.json"),
    "baselines_cpu": lambda: baselines("class_baselines-resnet18.json"),
    "instance_memorising": lambda: instance("instance_forgetting-5000-e20-ls0.json"),
    "sharding": sharding, "demo_runs": demo_runs, "demo_gate": demo_gate,
    "ledger_race": ledger_race, "pool": pool_table, "readme_pool": readme_pool,
    "pool_shadows": shadows_table, "pool_budget": pool_budget,
    "pool_rebuilt": lambda: pool_table(POOL_REBUILT),
    "pool_rebuilt_shadows": lambda: shadows_table(POOL_REBUILT)}


def render(text: str) -> str:
    """``text`` with every generated block rewritten."""
    def replace(match: re.Match) -> str:
        name = match.group(2)
        if name not in GENERATORS:
            raise SystemExit(f"no generator for block {name!r}")
        return match.group(1) + GENERATORS[name]() + match.group(4)
    return BLOCK.sub(replace, text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report stale blocks")
    args = ap.parse_args()
    stale = []
    for doc in DOCS:
        text = doc.read_text()
        fresh = render(text)
        if fresh != text:
            stale.append(doc)
            if not args.check:
                doc.write_text(fresh)
    if args.check and stale:
        sys.exit(f"stale: {', '.join(str(d.relative_to(ROOT)) for d in stale)}")


if __name__ == "__main__":
    main()
