"""Pipelines built from oblivio's components."""
