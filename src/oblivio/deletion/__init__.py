"""The deletion rule and everything that acts on it: which model versions honour which deletion
requests (``rule``), intake (``intake``), the recurring batch's steps (``batches``), registration
and promotion under the rule (``publish``, ``promotion``), audit, verification, the per-request
report, and purge. It sits above the MLflow I/O (``tracking``) and the ledger's database
(``ledger``), which know nothing of each other."""
