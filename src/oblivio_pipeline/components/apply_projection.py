from kfp import dsl

from oblivio_pipeline import component


@component
def apply_projection(model: dsl.Input[dsl.Model], dataset_uri: str,
                     subspaces: dsl.Input[dsl.Artifact], samples: dsl.Input[dsl.Dataset],
                     alpha_mode: str, alpha_r: float, alpha_f: float, forget_target: float,
                     device: str, unlearned: dsl.Output[dsl.Model],
                     alpha_grid: dsl.Output[dsl.Markdown]) -> None:
    """Project the weights, choosing alpha on the validation list.

    Args:
        model: The model to unlearn from.
        dataset_uri: Dataset directory or s3:// URI.
        subspaces: Eigenbases from compute_subspaces.
        samples: The sample lists (validation is used here).
        alpha_mode: "auto" (grid on validation) or "fixed" (alpha_r, alpha_f).
        alpha_r: Retain alpha when alpha_mode is fixed.
        alpha_f: Forget alpha when alpha_mode is fixed.
        forget_target: Validation forget accuracy a pair must reach (auto mode).
        device: cpu, cuda or auto.
        unlearned: The unlearned model directory.
        alpha_grid: The scored alpha grid, for the KFP UI.
    """
    from oblivio.errors import OblivioError
    from oblivio.unlearn.steps import project_step

    if alpha_mode not in ("auto", "fixed"):
        raise OblivioError(f"alpha_mode must be auto or fixed, got {alpha_mode!r}")
    alpha = "auto" if alpha_mode == "auto" else (alpha_r, alpha_f)
    prov = project_step(model.path, dataset_uri, subspaces.path, samples.path, unlearned.path,
                        alpha, forget_target, device=device)
    unlearned.metadata.update({"alpha": prov["alpha"], "forget_classes": prov["forget_classes"]})
    lines = ["| alpha_r | alpha_f | validation retain | validation forget |", "|---|---|---|---|"]
    for p in prov["alpha_grid"]:  # scoring stops once settled: <= and >= mark bounds
        retain = "-" if p["retain_acc"] is None else (
            ("<= " if p["retain_partial"] else "") + f"{p['retain_acc']:.4f}")
        forget = (">= " if p["forget_partial"] else "") + f"{p['forget_acc']:.4f}"
        lines.append(f"| {p['alpha_r']:g} | {p['alpha_f']:g} | {retain} | {forget} |")
    with open(alpha_grid.path, "w") as f:
        f.write(f"chosen: {prov['alpha']}\n\n" + "\n".join(lines) + "\n")
