from kfp import dsl

from oblivio_pipeline import component


@component
def capture_activations(model: dsl.Input[dsl.Model], dataset_uri: str,
                        samples: dsl.Input[dsl.Dataset], which: str, device: str,
                        statistics: dsl.Output[dsl.Artifact]) -> None:
    """Accumulate every projectable layer's input Gram matrix over one sample list.

    Args:
        model: The model to unlearn from.
        dataset_uri: Dataset directory or s3:// URI.
        samples: The sample lists from sample_data.
        which: "retain" or "forget": the list to capture.
        device: cpu, cuda or auto.
        statistics: Per-layer statistics (safetensors).
    """
    import os

    from oblivio.unlearn.steps import capture_step

    summary = capture_step(model.path, dataset_uri, os.path.join(samples.path,
                                                                 f"{which}.parquet"),
                           statistics.path, device=device)
    statistics.metadata.update({"set": which, **summary})
