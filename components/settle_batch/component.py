from oblivio_pipeline import control_component


@control_component
def settle_batch(model_name: str, batch_id: str, token: str, job_id: str, kind: str,
                 max_attempts: int) -> str:
    """After one part of a batch ran (classes, or ids): mark its requests honoured by the
    version counted for it, which must have become champion; otherwise send that part's
    requests back with the reason (split off to fail alone, or failed after their last
    attempt), and let the other part run. Refused, writing nothing, once the claim lost the
    batch.

    Args:
        model_name: Registered model the requests are for.
        batch_id: The batch claim_batch returned.
        token: The claim's fencing token claim_batch returned.
        job_id: The pipeline job's id (the claim's owner).
        kind: The part: classes or ids (a part the batch lacks settles nothing).
        max_attempts: Attempts before a request is marked failed.

    Returns:
        The champion's version number, which the next part starts from.
    """
    from oblivio.deletion.batches import settle_step
    from oblivio.ledger.store import Claim, Ledger

    claim = Claim(batch_id, f"kfp:{job_id}", int(token))
    version = settle_step(Ledger(), claim, model_name, kind, max_attempts)
    print(f"{batch_id} {kind}: champion is version {version}")
    return version
