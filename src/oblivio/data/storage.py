"""Resolve local paths and URIs (s3://...) to a pyarrow filesystem, so every reader and writer
handles both the same way."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from oblivio.errors import OblivioError
from oblivio.runner import pid_alive


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
    """Write a whole file to a path or URI, creating its folder. Locally the bytes go to a
    temporary file that is renamed over the target, so a reader never sees half a file (an S3
    object appears whole by itself)."""
    fs, path = resolve(uri)
    parent = path.rsplit("/", 1)[0]
    target = f"{path}.partial-{os.getpid()}" if is_local(uri) else path
    try:
        if parent:
            fs.create_dir(parent, recursive=True)
        with fs.open_output_stream(target) as f:
            f.write(data)
        if target != path:
            os.replace(target, path)
    except OSError as exc:
        if target != path:
            with contextlib.suppress(OSError):
                os.remove(target)
        raise OblivioError(f"cannot write {os.fspath(uri)}: {first_line(exc)}") from None


def is_local(uri: str | os.PathLike[str]) -> bool:
    return urlparse(os.fspath(uri)).scheme in ("", "file")


#: a hidden sibling a writer stages in: short (a long name of its own would push the staging
#: name past the file system's 255 bytes) and naming the writer's pid, so that what a killed
#: writer left is recognised and cleared by the next one
STAGE = re.compile(r"^\.oblivio-(\d+)-[a-z0-9_]+\.(partial|old)$")


def _sweep(folder: Path) -> None:
    """Clear what killed writers left in ``folder``: staging directories, and a replaced
    directory set aside that never came back (put back when nothing took its place)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        match = STAGE.match(entry.name)
        if match is None or pid_alive(int(match.group(1))):
            continue
        if match.group(2) == "old":
            for kept in list(entry.iterdir()):
                if not (folder / kept.name).exists():
                    os.replace(kept, folder / kept.name)
        shutil.rmtree(entry, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where
    the system or file system cannot."""
    libc = _libc()
    if libc is None:
        return False
    at_fdcwd, exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), exchange) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (38, 22, 95):  # ENOSYS, EINVAL, EOPNOTSUPP: not here
        return False
    raise OSError(errno, os.strerror(errno), str(b))


@functools.cache
def _libc():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                   ctypes.c_uint]
        return libc
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def staged_dir(uri: str | os.PathLike[str]) -> Iterator[str]:
    """Write a directory whole or not at all: a killed or failed writer leaves no directory,
    or the previous one intact. Locally the content goes to a hidden sibling that takes the
    directory's place at the end, an earlier directory of that name swapped out in one atomic
    step (or, where the system cannot, set aside first and put back by the next writer if a
    kill came between); what a killed writer left is cleared by the next. On S3, where
    nothing renames, it is written in place and the caller writes its commit file last (a
    model's ``config.json``)."""
    text = os.fspath(uri)
    if not is_local(text):
        yield text
        return
    final = Path(resolve(text)[1])
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        _sweep(final.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".oblivio-{os.getpid()}-", suffix=".partial",
                                    dir=final.parent))
    except OSError as exc:
        raise OblivioError(f"cannot write {text}: {first_line(exc)}") from None
    try:
        yield str(tmp)
        if not final.exists():
            os.replace(tmp, final)
        elif _exchange(tmp, final):  # the old directory is now at tmp, removed below
            pass
        else:  # the old one goes aside first: a kill now leaves it for the next writer
            old = Path(tempfile.mkdtemp(prefix=f".oblivio-{os.getpid()}-", suffix=".old",
                                        dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_output_dir(out: str | os.PathLike[str], inputs: Iterable[str | None] = (),
                     force: bool = False) -> None:
    """Before any compute: ``out`` (links resolved) is none of the inputs, holds none of them
    and lies inside none of them, is not a directory with content unless ``force``, and its
    folder can be written (probed by creating and removing a directory there). S3
    destinations are checked when written."""
    text = os.fspath(out)
    if not is_local(text):
        return
    path = Path(resolve(text)[1]).resolve()  # links resolved: a link to an input is it
    for given in inputs:
        if given is None or not is_local(given):
            continue
        source = Path(resolve(given)[1]).resolve()
        if path == source or path in source.parents:
            raise OblivioError(f"--out {text} would overwrite the input {os.fspath(given)}: "
                               "write the result to a new directory")
        if source in path.parents and source.is_dir():
            raise OblivioError(f"--out {text} lies inside the input {os.fspath(given)}: "
                               "write the result to a directory of its own")
    if path.exists() and not path.is_dir():
        raise OblivioError(f"--out {text} is a file, not a directory")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise OblivioError(f"--out {text} is not empty: choose a new directory, or pass "
                           "--force to replace it")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise OblivioError(f"cannot write {text}: {existing} is a file")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".oblivio-probe-", dir=existing))
    except OSError as exc:
        raise OblivioError(f"cannot write {text}: {first_line(exc)}") from None
