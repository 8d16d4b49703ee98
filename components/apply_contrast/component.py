from kfp import dsl

from oblivio_pipeline import component


@component
def apply_contrast(model: dsl.Input[dsl.Model], dataset_uri: str,
                   retain_statistics: dsl.Input[dsl.Artifact],
                   forget_statistics: dsl.Input[dsl.Artifact], samples: dsl.Input[dsl.Dataset],
                   ratio_mode: str, ratio: float, rounds: int, blocks: int, forget_target: float,
                   device: str, unlearned: dsl.Output[dsl.Model],
                   ratio_grid: dsl.Output[dsl.Markdown],
                   batch_hold: str = "") -> None:
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
        batch_hold: The deletion batch's claim from claim_batch ("" outside a batch): its
            lease is renewed while this step works, and the step fails once the batch is lost.
    """
    from oblivio.deletion.batches import held
    from oblivio.steps import contrast_step

    with held(batch_hold):
        prov = contrast_step(model.path, dataset_uri, retain_statistics.path,
                             forget_statistics.path, samples.path, unlearned.path, ratio_mode,
                             ratio, rounds, forget_target, device, blocks,
                             grid_file=ratio_grid.path)
    unlearned.metadata.update({key: prov[key] for key in ("ratio", "rounds", "blocks",
                                                          "forget_classes")})
