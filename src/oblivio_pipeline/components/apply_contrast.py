from kfp import dsl

from oblivio_pipeline import component


@component
def apply_contrast(model: dsl.Input[dsl.Model], dataset_uri: str,
                   retain_statistics: dsl.Input[dsl.Artifact],
                   forget_statistics: dsl.Input[dsl.Artifact], samples: dsl.Input[dsl.Dataset],
                   ratio_mode: str, ratio: float, rounds: int, forget_target: float, device: str,
                   unlearned: dsl.Output[dsl.Model], ratio_grid: dsl.Output[dsl.Markdown]) -> None:
    """Remove the input directions the forget samples use far more than the retain samples
    (energy contrast), choosing the threshold and rounds on the validation list.

    Args:
        model: The model to unlearn from.
        dataset_uri: Dataset directory or s3:// URI.
        retain_statistics: Statistics of the retain samples.
        forget_statistics: Statistics of the forget samples.
        samples: The sample lists (validation is used here, retain and forget for later rounds).
        ratio_mode: "auto" (grid on validation) or "fixed" (ratio, applied rounds times).
        ratio: Forget-to-retain energy ratio above which directions go, in fixed mode.
        rounds: Most rounds (each re-captures the edited model's statistics).
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
                         device)
    unlearned.metadata.update({"ratio": prov["ratio"], "rounds": prov["rounds"],
                               "forget_classes": prov["forget_classes"]})
    lines = ["| ratio | rounds | directions removed | validation retain | validation forget |",
             "|---|---|---|---|---|"]
    for p in prov["ratio_grid"]:  # scoring stops once a miss is sure: >= marks a bound
        retain = "-" if p["retain_acc"] is None else f"{p['retain_acc']:.4f}"
        forget = (">= " if p["forget_partial"] else "") + f"{p['forget_acc']:.4f}"
        lines.append(f"| {p['tau']:g} | {p['rounds']} | {p['removed']} | {retain} | {forget} |")
    with open(ratio_grid.path, "w") as f:
        f.write(f"chosen: ratio {prov['ratio']:g}, {prov['rounds']} round(s)\n\n"
                + "\n".join(lines) + "\n")
