from typing import NamedTuple

from oblivio_pipeline import control_component


@control_component
def claim_batch(model_name: str, batch_root: str, lease_minutes: int, max_attempts: int,
                job_id: str) -> NamedTuple("Claim", batch_id=str, token=str, forget_classes=str,
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

    Returns:
        batch_id: The batch ("" when nothing is pending: the rest is skipped).
        token: The claim's fencing token, which every later ledger write for the batch names.
        forget_classes: Its classes, comma-separated ("" for none).
        forget_ids_uri: Where its sample ids were written ("" for none).
        classes_key: The deletion-batch key the classes' version registers under.
        ids_key: The deletion-batch key the images' version registers under.
    """
    import json
    from datetime import timedelta

    from oblivio.ledger.batches import claim_step
    from oblivio.ledger.store import Ledger

    _, run = claim_step(Ledger(), model_name, batch_root, timedelta(minutes=lease_minutes),
                        f"kfp:{job_id}", max_attempts)
    print(json.dumps(run))
    return (run["batch_id"], run["token"], run["forget_classes"], run["forget_ids_uri"],
            run["classes_key"], run["ids_key"])
