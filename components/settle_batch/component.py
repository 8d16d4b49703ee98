from oblivio_pipeline import control_component


@control_component
def settle_batch(model_name: str, batch_id: str, kind: str, max_attempts: int) -> str:
    """After one part of a batch ran (classes, or ids): mark its requests honoured by the
    version registered for it, which must have become champion; otherwise send the batch's
    requests back to pending with the reason (failed after their last attempt) and fail.

    Args:
        model_name: Registered model the requests are for.
        batch_id: The batch claim_batch returned.
        kind: The part: classes or ids (a part the batch lacks settles nothing).
        max_attempts: Attempts before a request is marked failed.

    Returns:
        The champion's version number, which the next part starts from.
    """
    from oblivio.ledger.batches import settle_step
    from oblivio.ledger.store import Ledger

    version = settle_step(Ledger(), model_name, batch_id, kind, max_attempts)
    print(f"{batch_id} {kind}: champion is version {version}")
    return version
