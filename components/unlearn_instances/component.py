from kfp import dsl

from oblivio_pipeline import component


@component
def unlearn_instances(model: dsl.Input[dsl.Model], dataset_uri: str,
                      samples: dsl.Input[dsl.Dataset], ablation: str, max_epochs: int,
                      seed: int, device: str, unlearned: dsl.Output[dsl.Model]) -> None:
    """Forget the deletion request's training images with L2UL (adversarial examples + weight
    importance), using only the model and those images.

    Args:
        model: The model to unlearn from.
        dataset_uri: Dataset directory or s3:// URI.
        samples: The checked deletion request from sample_data.
        ablation: adv+imp (the method), adv or naive.
        max_epochs: Cap on epochs over the request; a hit cap is recorded with the model.
        seed: Seed of the adversarial targets and batches.
        device: cpu, cuda or auto.
        unlearned: The unlearned model directory.
    """
    from oblivio.unlearn.instance_forgetting import L2ULSettings
    from oblivio.unlearn.steps import instance_step

    prov = instance_step(model.path, dataset_uri, samples.path, unlearned.path,
                         L2ULSettings(ablation=ablation, max_epochs=max_epochs, seed=seed),
                         device)
    unlearned.metadata.update({key: prov[key] for key in (
        "forget_ids_count", "forget_ids_sha256", "steps", "cap_hit", "forget_acc")})
