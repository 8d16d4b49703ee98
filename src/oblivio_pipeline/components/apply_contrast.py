from kfp import dsl

from oblivio_pipeline import component


@component
def apply_contrast(model: dsl.Input[dsl.Model], dataset_uri: str,
                   retain_statistics: dsl.Input[dsl.Artifact],
                   forget_statistics: dsl.Input[dsl.Artifact], samples: dsl.Input[dsl.Dataset],
                   ratio_mode: str, ratio: float, rounds: int, blocks: int, forget_target: float,
                   device: str, unlearned: dsl.Output[dsl.Model],
                   ratio_grid: dsl.Output[dsl.Markdown]) -> None:
    """Remove the input directions the forget samples use far more than the retain samples
    (energy contrast), choosing the threshold, rounds and depth on the validation list.

    Args:
        model: The model to unlearn from.
        dataset_uri: Dataset directory or s3:// URI.
        retain_statistics: Statistics of the retain samples.
        forget_statistics: Statistics of the forget samples.
        samples: The sample lists (validation is used here, retain and forget for later rounds).
        ratio_mode: "auto" (grid on validation) or "fixed" (ratio, applied rounds times).
        ratio: Forget-to-retain energy ratio above which directions go, in fixed mode.
        rounds: Most rounds (each re-captures the edited model's statistics).
        blocks: How many of the network's last blocks to edit; 0 chooses the depth on validation
            (auto mode) or edits every layer (fixed mode).
        forget_target: Validation forget accuracy a threshold must reach (auto mode).
        device: cpu, cuda or auto.
        unlearned: The unlearned model directory.
        ratio_grid: The scored thresholds, for the KFP UI.
    """
    from oblivio.errors import OblivioError
    from oblivio.unlearn.steps import contrast_step

    if ratio_mode not in ("auto", "fixed"):
        raise OblivioError(f"ratio_mode must be auto or fixed, got {ratio_mode!r}")
    prov = contrast_step(model.path, dataset_uri, retain_statistics.path,
                         forget_statistics.path, samples.path, unlearned.path,
                         "auto" if ratio_mode == "auto" else ratio, rounds, forget_target,
                         device, blocks or "auto")
    unlearned.metadata.update({"ratio": prov["ratio"], "rounds": prov["rounds"],
                               "blocks": prov["blocks"],
                               "forget_classes": prov["forget_classes"]})
    lines = ["| blocks | ratio | rounds | directions removed | validation retain "
             "| validation forget |", "|---|---|---|---|---|---|"]
    for p in prov["ratio_grid"]:  # scoring stops once a miss is sure: >= marks a bound
        retain = "-" if p["retain_acc"] is None else f"{p['retain_acc']:.4f}"
        forget = (">= " if p["forget_partial"] else "") + f"{p['forget_acc']:.4f}"
        depth = prov["blocks_total"] if p["blocks"] is None else p["blocks"]
        lines.append(f"| {depth} | {p['tau']:g} | {p['rounds']} | {p['removed']} | {retain} "
                     f"| {forget} |")
    with open(ratio_grid.path, "w") as f:
        f.write(f"chosen: ratio {prov['ratio']:g}, {prov['rounds']} round(s), the last "
                f"{prov['blocks']} of {prov['blocks_total']} blocks\n\n"
                + "\n".join(lines) + "\n")
