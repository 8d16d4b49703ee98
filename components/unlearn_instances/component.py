from kfp import dsl

from oblivio_pipeline import component


@component
def unlearn_instances(model: dsl.Input[dsl.Model], dataset_uri: str,
                      samples: dsl.Input[dsl.Dataset], method: str, max_steps: int,
                      ablation: str, max_epochs: int, seed: int, device: str,
                      unlearned: dsl.Output[dsl.Model],
                      batch_hold: str = "", shadows_uri: str = "",
                      max_seconds: float = 0.0) -> None:
    """Forget the deletion request's training images: ``match`` (the default) makes the model
    treat them like images it never saw, as a retrain would; ``relabel`` (the choice for
    mislabelled images) moves them to the model's runner-up class, where a retrain puts them;
    ``l2ul`` pushes them off their labels.

    Args:
        model: The model to unlearn from.
        dataset_uri: Dataset directory or s3:// URI.
        samples: The checked deletion request from sample_data.
        method: match, relabel or l2ul.
        max_steps: match: cap on steps; a hit cap is recorded with the model.
        ablation: l2ul: adv+imp (the method), adv or naive.
        max_epochs: l2ul, relabel: cap on epochs over the request; a hit cap is recorded.
        seed: Seed of the batches (and of l2ul's adversarial targets).
        device: cpu, cuda or auto.
        unlearned: The unlearned model directory.
        batch_hold: The deletion batch's claim from claim_batch ("" outside a batch): its
            lease is renewed while this step works, and the step fails once the batch is lost.
        shadows_uri: match: the original's shadow models (`oblivio pool shadows`; "" for
            none): each image is aimed at what the shadows that never saw it do on it, instead
            of the population's rank targets. The other methods do not read them.
        max_seconds: Wall-clock budget on the method's steps (0: none): the step under way
            when it runs out is the last, and the model records ``deadline_hit``.
    """
    from oblivio.deletion.batches import held
    from oblivio.steps import instance_step

    aim = {"targets": "shadows", "shadows": shadows_uri} if shadows_uri else {}
    options = {"match": {"max_steps": max_steps, **aim},
               "l2ul": {"ablation": ablation, "max_epochs": max_epochs},
               "relabel": {"epochs": float(max_epochs)}}.get(method, {})
    budget = {"max_seconds": max_seconds} if max_seconds else {}
    with held(batch_hold):
        prov = instance_step(model.path, dataset_uri, samples.path, unlearned.path, method,
                             {**options, **budget, "seed": seed}, device)
    unlearned.metadata.update({key: prov[key] for key in (
        "method", "forget_ids_count", "forget_ids_sha256", "steps", "cap_hit",
        "deadline_hit", "forgotten_acc")})
