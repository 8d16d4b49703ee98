"""Erase every copy at a location, and say what was erased: a local file or directory tree, or
everything under an ``s3://`` prefix, including the older object versions and delete markers a
versioned bucket keeps (deleting only the current version would leave the data readable).

The receipt names what was removed and how to recognise it: SHA-256 of each local file, the
ETag (the content's MD5 for a single-part upload) and version id of each S3 object."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

from oblivio.errors import OblivioError


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _under(name: str, prefix: str | None) -> bool:
    return prefix is not None and (name == prefix or name.startswith(prefix.rstrip("/") + "/"))


def erase(uri: str, keep: str | None = None) -> dict:
    """Remove ``uri`` (file, folder, or S3 prefix) and every version of it, except what lies
    under ``keep`` (a folder inside it, of the same kind: the step that erases its own run's
    folder keeps its own outputs). Returns the receipt: where, how many objects, and each
    one's name and digest. Nothing there: an empty receipt, not an error (a second purge
    finds it gone)."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        kept = urlparse(keep).path.lstrip("/") if keep else None
        return _erase_s3(parsed.netloc, parsed.path.lstrip("/"), uri, kept)
    if parsed.scheme not in ("", "file"):
        raise OblivioError(f"cannot erase {uri!r}: a path or s3:// URI only")
    path = Path(parsed.path if parsed.scheme == "file" else uri)
    if not path.exists() and not path.is_symlink():
        return {"where": uri, "objects": []}
    if path.is_symlink() or path.is_file():  # a link is removed, never followed
        objects = [{"name": path.name, "sha256": None if path.is_symlink() else _sha256(path)}]
        path.unlink()
        return {"where": uri, "objects": objects}
    if keep is None:
        objects = [{"name": str(f.relative_to(path)), "sha256": _sha256(f)}
                   for f in sorted(path.rglob("*")) if f.is_file() and not f.is_symlink()]
        shutil.rmtree(path)
        return {"where": uri, "objects": objects}
    kept = str(Path(urlparse(keep).path if keep.startswith("file:") else keep))
    objects = []
    for f in sorted(path.rglob("*"), reverse=True):  # children before their folders
        if _under(str(f), kept) or _under(kept, str(f)):
            continue  # kept, or a folder on the way to what is kept
        if f.is_dir() and not f.is_symlink():
            f.rmdir()
            continue
        objects.append({"name": str(f.relative_to(path)),
                        "sha256": None if f.is_symlink() else _sha256(f)})
        f.unlink()
    return {"where": uri, "objects": sorted(objects, key=lambda o: o["name"])}


def erase_older_versions(uri: str) -> dict:
    """Remove every version of the object at ``uri`` but the current one (an S3 key just
    overwritten: a versioned bucket still serves what it held). A local file has no older
    versions once replaced. Returns the receipt."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3":
        return {"where": uri, "objects": []}
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    key = parsed.path.lstrip("/")
    s3 = boto3.client("s3", endpoint_url=_endpoint())
    try:
        page = s3.list_object_versions(Bucket=parsed.netloc, Prefix=key)
        old = [o for o in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
               if o["Key"] == key and not o["IsLatest"]]
        if old:
            s3.delete_objects(Bucket=parsed.netloc, Delete={"Quiet": True, "Objects": [
                {"Key": key, "VersionId": o["VersionId"]} for o in old]})
    except (BotoCoreError, ClientError) as exc:
        raise OblivioError(f"erasing older versions of {uri}: {str(exc).splitlines()[0]}") \
            from None
    return {"where": uri, "objects": [{"name": key, "version": o["VersionId"],
                                       "etag": o.get("ETag", "").strip('"') or None}
                                      for o in old]}


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("MLFLOW_S3_ENDPOINT_URL")


def _erase_s3(bucket: str, prefix: str, uri: str, keep: str | None) -> dict:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = boto3.client("s3", endpoint_url=_endpoint())
    objects: list[dict] = []
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket,
                                                                      Prefix=prefix):
            found = [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            # a prefix names a key or a folder of keys, not every key that starts with it
            found = [o for o in found if _under(o["Key"], prefix)
                     and not _under(o["Key"], keep)]
            if not found:
                continue
            objects += [{"name": o["Key"], "version": o["VersionId"],
                         "etag": o.get("ETag", "").strip('"') or None} for o in found]
            s3.delete_objects(Bucket=bucket, Delete={"Quiet": True, "Objects": [
                {"Key": o["Key"], "VersionId": o["VersionId"]} for o in found]})
    except (BotoCoreError, ClientError) as exc:
        raise OblivioError(f"erasing {uri}: {str(exc).splitlines()[0]}") from None
    return {"where": uri, "objects": objects}
