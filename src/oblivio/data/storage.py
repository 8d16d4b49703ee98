"""Resolve local paths and URIs (s3://...) to a pyarrow filesystem, so every reader and writer
handles both the same way."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pyarrow.fs as pafs

from oblivio.errors import OblivioError


def resolve(uri: str | os.PathLike[str]) -> tuple[pafs.FileSystem, str]:
    """Return (filesystem, path inside it) for a local path or an ``s3://bucket/key`` URI.

    S3 settings come from the usual AWS variables; ``AWS_ENDPOINT_URL`` (or
    ``MLFLOW_S3_ENDPOINT_URL``) points at MinIO or another S3-compatible endpoint.
    """
    text = os.fspath(uri)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("MLFLOW_S3_ENDPOINT_URL")
        kwargs: dict[str, object] = {}
        if endpoint:
            ep = urlparse(endpoint)
            kwargs["endpoint_override"] = ep.netloc or ep.path
            kwargs["scheme"] = ep.scheme or "http"
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
        if region:
            kwargs["region"] = region
        kwargs["connect_timeout"] = 5
        kwargs["request_timeout"] = 60
        # Fail fast on an unreachable endpoint instead of ten silent retries.
        kwargs["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(max_attempts=3)
        fs = pafs.S3FileSystem(**kwargs)
        return fs, f"{parsed.netloc}{parsed.path}".rstrip("/")
    if parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme == "file" else text
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))
    raise OblivioError(f"unsupported URI scheme {parsed.scheme!r} in {text!r} (use a path or s3://)")


def join(base: str, name: str) -> str:
    """Join a filesystem path (as returned by ``resolve``) and a file name."""
    return f"{base.rstrip('/')}/{name}"


def read_bytes(uri: str | os.PathLike[str]) -> bytes:
    """Read a whole file from a path or URI, with one clear error when it is missing."""
    fs, path = resolve(uri)
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError as exc:
        raise OblivioError(f"file not found: {os.fspath(uri)}") from exc
    except OSError as exc:
        raise OblivioError(f"cannot read {os.fspath(uri)}: {first_line(exc)}") from exc


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message: storage errors can span a page."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def write_bytes(uri: str | os.PathLike[str], data: bytes) -> None:
    """Write a whole file to a path or URI, creating its folder."""
    fs, path = resolve(uri)
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.create_dir(parent, recursive=True)
    try:
        with fs.open_output_stream(path) as f:
            f.write(data)
    except OSError as exc:
        raise OblivioError(f"cannot write {os.fspath(uri)}: {first_line(exc)}") from exc
