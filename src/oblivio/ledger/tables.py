"""The ledger's schema (SQLAlchemy Core) at the newest migration: deletion requests, the images
or classes each names, the batches that honour them, the version each part of a batch
registered, and the append-only, hash-chained history of every change.

``items`` holds one row per image or class of every request that is pending, claimed or
honoured, keyed by (model, kind, item): the database itself refuses a second request for the
same image, so two intakes at once cannot both accept it. A request that fails for good gives
its items back. The schema is created and changed only by the Alembic migrations beside this
module (``oblivio ledger upgrade``); these definitions are what the code reads and writes.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

#: a request's life: pending -> claimed (in a batch) -> honoured, or back to pending on a
#: failed attempt, or failed after the last allowed attempt
STATES = ("pending", "claimed", "honoured", "failed")
#: what the history records
EVENTS = ("submitted", "claimed", "taken_over", "registered", "honoured", "returned", "failed",
          "champion", "purged")

batches = Table(
    "batches", metadata,
    Column("id", String(40), primary_key=True),
    Column("model_name", String(256), nullable=False, index=True),
    # claimed (under a lease) -> completed, or failed when any part of it failed
    Column("state", String(16), nullable=False, index=True),
    Column("owner", String(256), nullable=False),
    Column("lease_until", DateTime(timezone=True), nullable=False),
    # the fencing token: 1 + times taken over after a lease expired
    Column("claims", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("ids_sha256", String(64)),  # the union of its image requests, as run
    Column("ids_uri", Text),  # where the claim wrote those ids for the run's steps
    Column("ids_erased_at", DateTime(timezone=True)),  # ... and when that copy was erased
    Column("versions", Text),  # versions honoured by it, comma-separated
    Column("error", Text),
)

requests = Table(
    "requests", metadata,
    Column("id", String(40), primary_key=True),
    Column("model_name", String(256), nullable=False, index=True),
    Column("kind", String(8), nullable=False),  # "ids" or "classes"
    Column("count", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),  # of the sorted ids (or class indices)
    Column("ticket", String(256), index=True),
    Column("deadline", Date),
    Column("state", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("batch_id", String(40), ForeignKey("batches.id")),
    Column("version", String(32)),  # the model version that first honoured it
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("honoured_at", DateTime(timezone=True)),
    # failed in a batch with others: claimed alone next time, so it fails alone
    Column("solo", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("model_name", "ticket", name="uq_requests_model_ticket"),
)

items = Table(
    "items", metadata,
    Column("model_name", String(256), primary_key=True),
    Column("kind", String(8), primary_key=True),
    Column("item", String(256), primary_key=True),  # a sample id, or a class index
    Column("request_id", String(40), ForeignKey("requests.id"), nullable=False, index=True),
)

parts = Table(
    "parts", metadata,
    Column("batch_id", String(40), ForeignKey("batches.id"), primary_key=True),
    Column("kind", String(8), primary_key=True),
    Column("version", String(32), nullable=False),  # the one version this part counts
    Column("token", Integer, nullable=False),  # the claim that recorded it
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

copies = Table(
    "copies", metadata,
    Column("batch_id", String(40), ForeignKey("batches.id"), primary_key=True),
    Column("uri", String(1024), primary_key=True),  # a folder or s3:// prefix a run wrote
    Column("what", String(64), nullable=False),  # e.g. "pipeline-root intermediates"
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("erased_at", DateTime(timezone=True)),
)

events = Table(
    "events", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("model_name", String(256), nullable=False, index=True),
    Column("event", String(16), nullable=False),
    Column("request_id", String(40), index=True),
    Column("batch_id", String(40)),
    Column("detail", Text, nullable=False),  # canonical JSON
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
