from kfp import dsl

from oblivio_pipeline import component


@component
def capture_activations(model: dsl.Input[dsl.Model], dataset_uri: str,
                        samples: dsl.Input[dsl.Dataset], which: str, shard: int, shards: int,
                        device: str, statistics: dsl.Output[dsl.Artifact],
                        batch_hold: str = "") -> None:
    """Accumulate every projectable layer's input Gram matrix over one shard of a sample list
    (merge_statistics adds the shards up).

    Args:
        model: The model to unlearn from.
        dataset_uri: Dataset directory or s3:// URI.
        samples: The sample lists from sample_data.
        which: "retain" or "forget": the list to capture.
        shard: Which contiguous slice of the list (0-based).
        shards: How many slices the list is cut into.
        device: cpu, cuda or auto.
        statistics: Per-layer statistics (safetensors).
        batch_hold: The deletion batch's claim from claim_batch ("" outside a batch): its
            lease is renewed while this step works, and the step fails once the batch is lost.
    """
    import os

    from oblivio.deletion.batches import held
    from oblivio.steps import capture_step

    with held(batch_hold):
        summary = capture_step(model.path, dataset_uri, os.path.join(samples.path,
                                                                     f"{which}.parquet"),
                               statistics.path, device=device, shard=shard, shards=shards)
    statistics.metadata.update({"set": which, **summary})
