"""The deletion-request ledger: intake, exactly-once batches, audit."""
