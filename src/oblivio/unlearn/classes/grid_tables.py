"""Markdown tables of the choices a training-free method scored on validation (alpha pairs,
contrast thresholds), for the KFP UI and the report: what was tried, and why the winner won."""

from __future__ import annotations


def alpha_grid_markdown(provenance: dict) -> str:
    """The projection's scored (alpha_r, alpha_f) pairs; scoring stops once a pair's fate is
    settled, so ``<=`` and ``>=`` mark bounds rather than measured values."""
    lines = ["| alpha_r | alpha_f | validation retain | validation forget |", "|---|---|---|---|"]
    for p in provenance["alpha_grid"]:
        retain = "-" if p["retain_acc"] is None else (
            ("<= " if p["retain_partial"] else "") + f"{p['retain_acc']:.4f}")
        forget = (">= " if p["forget_partial"] else "") + f"{p['forget_acc']:.4f}"
        lines.append(f"| {p['alpha_r']:g} | {p['alpha_f']:g} | {retain} | {forget} |")
    alpha = provenance["alpha"]
    return f"chosen: alpha_r {alpha['retain']:g}, alpha_f {alpha['forget']:g}\n\n" + \
        "\n".join(lines) + "\n"


def ratio_grid_markdown(provenance: dict) -> str:
    """The contrast method's scored thresholds, rounds and depths (``>=``: a lower bound)."""
    lines = ["| blocks | ratio | rounds | directions removed | validation retain "
             "| validation forget |", "|---|---|---|---|---|---|"]
    for p in provenance["ratio_grid"]:
        retain = "-" if p["retain_acc"] is None else f"{p['retain_acc']:.4f}"
        forget = (">= " if p["forget_partial"] else "") + f"{p['forget_acc']:.4f}"
        depth = provenance["blocks_total"] if p["blocks"] is None else p["blocks"]
        lines.append(f"| {depth} | {p['tau']:g} | {p['rounds']} | {p['removed']} | {retain} "
                     f"| {forget} |")
    return (f"chosen: ratio {provenance['ratio']:g}, {provenance['rounds']} round(s), the last "
            f"{provenance['blocks']} of {provenance['blocks_total']} blocks\n\n"
            + "\n".join(lines) + "\n")
