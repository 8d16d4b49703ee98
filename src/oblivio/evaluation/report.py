"""Write an evaluation report: ``report.json`` (flat keys), ``report.md`` and a self-contained
``report.html`` with its plots (PNG files beside it and inlined), for people and the KFP UI."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib import pyplot as plt

from oblivio.data.storage import staged_dir

ROLES = ("original", "model", "oracle")


def _fmt(value: object) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown(report: dict) -> str:
    roles = [r for r in ROLES if r in report["models"]]
    forget = (f"classes {', '.join(report['class_names'][c] for c in report['forget_classes'])}"
              if report["mode"] == "class"
              else f"{report['forget_ids_count']} instances (sha256 "
                   f"{report['forget_ids_sha256'][:12]})")
    lines = [f"# Forgetting report ({report['mode']} mode)", "",
             f"Forget set: {forget}; {report['forget_train_samples']} training samples.", "",
             *_instance_summary(report, roles),
             "| metric | " + " | ".join(roles) + (" | gap to oracle" if "oracle" in roles else "")
             + " | direction |",
             "|---|" + "---|" * len(roles) + ("---|" if "oracle" in roles else "") + "---|"]
    for key, direction in report["directions"].items():
        row = [key] + [_fmt(report["models"][r]["metrics"][key]) for r in roles]
        if "oracle" in roles:
            row.append(_fmt(report.get(f"{key}_gap_to_oracle")))
        lines.append("| " + " | ".join(row + [direction]) + " |")
    return "\n".join(lines + _pool_lines(report.get("pool"))
                     + _shadow_lines(report.get("shadows")) + _gate_lines(report.get("gate"))
                     ) + "\n"


def _gate_lines(gate: dict | None) -> list[str]:
    if gate is None:
        return []
    return ["", f"Gate: {'passed' if gate['passed'] else 'failed'}",
            *[f"- {reason}" for reason in gate["reasons"]]]


EVIDENCE_KEYS = ("tpr_at_1pct_fpr", "tpr_at_5pct_fpr", "epsilon_mean", "klom_mean", "mean_phi")


def _pool_lines(pool: dict | None) -> list[str]:
    """Per-example evidence against the pool of retrains: the model beside the held retrains
    (what a retrain scores), on the whole request and its memorised part."""
    if pool is None:
        return []
    lines = ["", f"Against a pool of {pool['k']} retrains and {pool['k']} models trained with "
                 f"the request ({pool['held']} more retrains held out as the control); "
                 f"{pool['memorised']} of {pool['examples']} images memorised (the pool's "
                 f"means more than {pool['memorised_gap']} spreads apart).", "",
             "| part | model | " + " | ".join(EVIDENCE_KEYS) + " |",
             "|---|---|" + "---|" * len(EVIDENCE_KEYS)]
    for part in ("all", "memorised"):
        rows = [("model", pool["model"][part])] + [
            (f"held retrain {i}", held[part]) for i, held in enumerate(pool["held_retrains"])]
        for name, evidence in rows:
            if evidence is not None:
                lines.append(f"| {part} | {name} | "
                             + " | ".join(_fmt(evidence[k]) for k in EVIDENCE_KEYS) + " |")
    return lines


def _shadow_lines(shadows: dict | None) -> list[str]:
    """Per-example evidence against the original's shadows (their out-shadows set the 1% and
    5% thresholds, so a retrain-like model scores about those rates)."""
    if shadows is None:
        return []
    lines = ["", f"Against {shadows['k']} shadow models ({shadows['k'] // 2} never saw each "
                 f"image); {shadows['memorised']} of {shadows['examples']} images memorised.",
             "", "| part | " + " | ".join(EVIDENCE_KEYS) + " |",
             "|---|" + "---|" * len(EVIDENCE_KEYS)]
    for part in ("all", "memorised"):
        evidence = shadows["model"][part]
        if evidence is not None:
            lines.append(f"| {part} | " + " | ".join(_fmt(evidence[k]) for k in EVIDENCE_KEYS)
                         + " |")
    return lines


def _instance_summary(report: dict, roles: list[str]) -> list[str]:
    """For a deletion request, one line per model: the forgotten images beside the test split,
    the comparison a retrain answers (it gets them about as right as unseen images)."""
    if report["mode"] != "instance":
        return []
    lines = []
    if report.get("judged_without_classes"):
        shown = ", ".join(str(c) for c in report["judged_without_classes"])
        lines += [f"Judged among the classes the model still knows: without class(es) {shown} "
                  f"(their images in the request, {report['forgotten_with_class']}, went with "
                  "them).", ""]
    unseen = report.get("unseen_images")
    if unseen:
        lines += [f"Unseen images: the attacks compare with the {unseen['evaluation']}; "
                  f"methods tune towards the {unseen['reference']}.", ""]
    for role in roles:
        m = report["models"][role]["metrics"]
        lines.append(f"- {role}: forgotten images acc {_fmt(m['forget_train_acc'])}, loss "
                     f"{_fmt(m['forget_train_loss'])}; test split acc "
                     f"{_fmt(m['retain_test_acc'])}, loss {_fmt(m['test_loss'])}; loss attack "
                     f"AUC {_fmt(m['mia_loss_auc'])} (0.5 +- {_fmt(2.576 * m['mia_loss_auc_sd'])}"
                     " for a retrain)")
    return [*lines, ""]


def _png(fig: plt.Figure, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    path.write_bytes(buf.getvalue())
    return base64.b64encode(buf.getvalue()).decode()


def _per_class_plot(report: dict) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(9, 3.2))
    roles = [r for r in ROLES if r in report["per_class_test_acc"]]
    names = report["class_names"]
    width = 0.8 / len(roles)
    for i, role in enumerate(roles):
        ax.bar(np.arange(len(names)) + i * width, report["per_class_test_acc"][role], width,
               label=role)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=30, ha="right")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(ncol=len(roles), fontsize=8)
    ax.set_title("Per-class test accuracy")
    return fig


def _mia_plot(features: dict) -> plt.Figure:
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    for ax, name in zip(axes, ("confidence", "entropy", "m_entropy")):
        values = np.concatenate([features[g][name] for g in features])
        bins = np.linspace(np.nanmin(values), np.nanmax(values) + 1e-12, 40)
        for group in ("retain_train", "forget_train", "test"):
            ax.hist(features[group][name], bins=bins, density=True, histtype="step",
                    label=group.replace("_", " "))
        ax.set_yscale("log")
        ax.set_title(name.replace("_", "-"))
    axes[0].legend(fontsize=8)
    fig.suptitle("Membership-inference features of the model under test")
    return fig


def _selection_plot(report: dict) -> plt.Figure:
    """The validation points the method chose among: alpha pairs (projection) or ratio
    thresholds, rounds and depths in blocks (contrast)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if report.get("alpha_grid"):
        grid, kind = report["alpha_grid"], "alpha grid"
        keys = [(p["alpha_r"], p["alpha_f"]) for p in grid]
        chosen = (report["alpha"]["retain"], report["alpha"]["forget"])
        names = [f"{r:g}/{f:g}" for r, f in keys]
    else:
        grid, kind = report["ratio_grid"], "ratio grid"
        keys = [(p["tau"], p["rounds"], p.get("blocks") or report.get("blocks_total"))
                for p in grid]
        chosen = (report["ratio"], report["rounds"], report.get("blocks"))
        depths = len({depth for _, _, depth in keys}) > 1
        names = [f"{tau:g}x{rounds}" + (f" b{depth}" if depths else "")
                 for tau, rounds, depth in keys]
    scored = [i for i, p in enumerate(grid)
              if p["retain_acc"] is not None and not p.get("retain_partial")]
    ax.scatter([grid[i]["forget_acc"] for i in scored], [grid[i]["retain_acc"] for i in scored],
               s=14)
    for i in scored:
        ax.annotate(names[i], (grid[i]["forget_acc"], grid[i]["retain_acc"]), fontsize=6)
    best = [grid[i] for i in scored if keys[i] == chosen]
    if best:
        ax.scatter([best[0]["forget_acc"]], [best[0]["retain_acc"]], s=60, facecolors="none",
                   edgecolors="red", label="chosen")
        ax.legend(fontsize=8)
    ax.set_xlabel("validation forget accuracy")
    ax.set_ylabel("validation retain accuracy")
    ax.set_title(f"{kind} ({len(grid)} points scored)")
    return fig


def write_report(report: dict, features: dict, out: str | os.PathLike[str]) -> None:
    """Write the report directory whole or not at all (built aside, renamed into place)."""
    with staged_dir(out) as staged:
        tmp = Path(staged)
        (tmp / "plots").mkdir()
        figures = {"per_class_accuracy": _per_class_plot(report),
                   "mia_features": _mia_plot(features)}
        if report.get("alpha_grid") or report.get("ratio_grid"):
            figures["selection_grid"] = _selection_plot(report)
        images = {name: _png(fig, tmp / "plots" / f"{name}.png") for name, fig in figures.items()}
        md = markdown(report)
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "report.md").write_text(md)
        body = "".join(f'<h2>{html.escape(name.replace("_", " "))}</h2>'
                       f'<img alt="{name}" src="data:image/png;base64,{data}">'
                       for name, data in images.items())
        (tmp / "report.html").write_text(
            "<!doctype html><html><head><meta charset='utf-8'><title>oblivio report</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
            "td,th{border:1px solid #ccc;padding:2px 6px}table{border-collapse:collapse}</style>"
            f"</head><body><pre>{html.escape(md)}</pre>{body}</body></html>\n")
