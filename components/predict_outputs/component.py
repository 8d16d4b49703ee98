from kfp import dsl

from oblivio_pipeline import component


@component
def predict_outputs(model: dsl.Input[dsl.Model], dataset_uri: str, shard: int, shards: int,
                    device: str, outputs: dsl.Output[dsl.Artifact],
                    batch_hold: str = "") -> None:
    """One shard of the evaluation's pass over the training split: the model's logits and
    penultimate features on a contiguous slice of it (evaluate_model gathers the shards).

    Args:
        model: The model to predict with.
        dataset_uri: Dataset directory or s3:// URI.
        shard: Which contiguous slice of the training split (0-based).
        shards: How many slices the split is cut into.
        device: cpu, cuda or auto.
        outputs: Logits, features and labels of the slice (safetensors).
        batch_hold: The deletion batch's claim from claim_batch ("" outside a batch): its
            lease is renewed while this step works, and the step fails once the batch is lost.
    """
    from oblivio.deletion.batches import held
    from oblivio.evaluation.outputs import predict_shard

    with held(batch_hold):
        outputs.metadata.update(predict_shard(model.path, dataset_uri, outputs.path, shard, shards,
                                              device))
