from kfp import dsl

from oblivio_pipeline import control_component


@control_component
def complete_batch(model_name: str, batch_id: str, token: str, job_id: str, max_attempts: int,
                   champion_version: str, receipt: dsl.Output[dsl.Artifact]) -> str:
    """The batch's last step, after every part was registered, promoted and settled: nothing
    of it may be left claimed; anything that is gets settled here, or sent back with the
    reason. Erases what finished batches left: ids files and their runs' pipeline-root
    folders (this one's too, all but this step's own outputs). Fails when any part of the
    batch failed, so the run shows it.

    Args:
        model_name: Registered model the requests are for.
        batch_id: The batch claim_batch returned.
        token: The claim's fencing token claim_batch returned.
        job_id: The pipeline job's id (the claim's owner).
        max_attempts: Attempts before a request is marked failed.
        champion_version: The champion after the last part (orders this step after it).
        receipt: What was erased, as JSON (the ledger's history holds the same receipts).

    Returns:
        The batch's state in the ledger.
    """
    import json
    import posixpath

    from oblivio.deletion.batches import complete_step
    from oblivio.ledger.store import Claim, Ledger

    ledger = Ledger()
    receipts = complete_step(ledger, Claim(batch_id, f"kfp:{job_id}", int(token)), model_name,
                             max_attempts, keep=posixpath.dirname(receipt.uri))
    with open(receipt.path, "w") as f:
        json.dump(receipts, f)
    state = ledger.batch_row(batch_id)["state"]
    print(f"{batch_id}: {state}; champion is version {champion_version}")
    return state
