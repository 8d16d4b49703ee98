"""Datasets in oblivio's contract: conversion, reading (local or S3) and batches by sample id.

The reader (torch) loads on first use of its names, so the ledger's steps, which only read and
write sample-id files here, run in the control-plane image without torch."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oblivio.data.reader import Dataset, Split, open_dataset

__all__ = ["Dataset", "Split", "open_dataset"]


def __getattr__(name: str):
    if name in __all__:
        from oblivio.data import reader

        return getattr(reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
