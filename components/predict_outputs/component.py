from kfp import dsl

from oblivio_pipeline import component


@component
def predict_outputs(original: dsl.Input[dsl.Model], unlearned: dsl.Input[dsl.Model],
                    dataset_uri: str, shard: int, shards: int, device: str,
                    original_outputs: dsl.Output[dsl.Artifact],
                    unlearned_outputs: dsl.Output[dsl.Artifact], batch_hold: str = "") -> None:
    """One shard of the evaluation's pass over the training split: the parent's and the
    unlearned model's logits and penultimate features on a contiguous slice of it, in one task
    (the slice is read once; evaluate_model gathers the shards).

    Args:
        original: The parent model.
        unlearned: The unlearned model.
        dataset_uri: Dataset directory or s3:// URI.
        shard: Which contiguous slice of the training split (0-based).
        shards: How many slices the split is cut into.
        device: cpu, cuda or auto.
        original_outputs: The parent's logits, features and labels of the slice (safetensors).
        unlearned_outputs: The unlearned model's, likewise.
        batch_hold: The deletion batch's claim from claim_batch ("" outside a batch): its
            lease is renewed while this step works, and the step fails once the batch is lost.
    """
    from oblivio.deletion.batches import held
    from oblivio.evaluation.outputs import predict_shard

    with held(batch_hold):
        found = predict_shard([original.path, unlearned.path], dataset_uri,
                              [original_outputs.path, unlearned_outputs.path], shard, shards,
                              device)
        original_outputs.metadata.update(found[0])
        unlearned_outputs.metadata.update(found[1])
