"""Datasets in oblivio's contract: conversion, reading (local or S3) and batches by sample id."""

from oblivio.data.reader import Dataset, Split, open_dataset

__all__ = ["Dataset", "Split", "open_dataset"]
