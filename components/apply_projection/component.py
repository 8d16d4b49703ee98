from kfp import dsl

from oblivio_pipeline import component


@component
def apply_projection(model: dsl.Input[dsl.Model], dataset_uri: str,
                     subspaces: dsl.Input[dsl.Artifact], samples: dsl.Input[dsl.Dataset],
                     alpha_mode: str, alpha_r: float, alpha_f: float, forget_target: float,
                     device: str, unlearned: dsl.Output[dsl.Model],
                     alpha_grid: dsl.Output[dsl.Markdown],
                     batch_hold: str = "") -> None:
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
        batch_hold: The deletion batch's claim from claim_batch ("" outside a batch): its
            lease is renewed while this step works, and the step fails once the batch is lost.
    """
    from oblivio.deletion.batches import held
    from oblivio.steps import project_step

    with held(batch_hold):
        prov = project_step(model.path, dataset_uri, subspaces.path, samples.path, unlearned.path,
                            alpha_mode, alpha_r, alpha_f, forget_target, device=device,
                            grid_file=alpha_grid.path)
    unlearned.metadata.update({"alpha": prov["alpha"], "forget_classes": prov["forget_classes"]})
