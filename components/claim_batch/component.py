from typing import NamedTuple

from kfp import dsl

from oblivio_pipeline import control_component


@control_component
def claim_batch(model_name: str, batch_root: str, lease_minutes: int, max_attempts: int,
                job_id: str, shadows_uri: str, claim: dsl.Output[dsl.Artifact]
                ) -> NamedTuple("Claim", batch_id=str, token=str, hold=str, forget_classes=str,
                                forget_ids_uri=str, classes_key=str, ids_key=str):
    """Claim every pending deletion request of the model into one batch, under a lease and a
    fencing token (or take over a batch whose run died); class requests the champion already
    meets are honoured at once.

    Args:
        model_name: Registered model the requests are for.
        batch_root: Folder or s3:// URI where a batch's sample ids are written.
        lease_minutes: How long the claim holds before another run may take the batch over.
        max_attempts: A batch whose runs died this many times fails instead.
        job_id: The pipeline job's id (the claim's owner).
        shadows_uri: The shadows the batch's runs read ("": none), recorded as a copy, so that
            once the batch is over they forget the images it honoured.
        claim: The claim as JSON (batch, token, lease, requests by id: no sample ids). Where
            it lands tells the run's pipeline-root folder, which the ledger records so that
            the batch's last step (or a purge) erases it.

    Returns:
        batch_id: The batch ("" when nothing is pending: the rest is skipped).
        token: The claim's fencing token, which every later ledger write for the batch names.
        hold: The claim and its lease, which the steps that run the model renew while they
            work ("" when nothing is pending).
        forget_classes: Its classes, comma-separated ("" for none).
        forget_ids_uri: Where its sample ids were written ("" for none).
        classes_key: The deletion-batch key the classes' version registers under.
        ids_key: The deletion-batch key the images' version registers under.
    """
    import json
    from datetime import timedelta

    from oblivio.deletion.batches import claim_step, run_root_of
    from oblivio.ledger.store import Ledger

    batch, run = claim_step(Ledger(), model_name, batch_root, timedelta(minutes=lease_minutes),
                            f"kfp:{job_id}", max_attempts, run_root_of(claim.uri, job_id),
                            shadows_uri)
    print(json.dumps(run))
    with open(claim.path, "w") as f:
        json.dump({**run, "requests": [r.id for r in batch.requests] if batch else []}, f)
    return (run["batch_id"], run["token"], run["hold"], run["forget_classes"],
            run["forget_ids_uri"], run["classes_key"], run["ids_key"])
