"""Writing a shard set to a remote ``--out`` (``s3://bucket/set/``, any fsspec URL): a cluster without a shared file
system.

``fda preprocess`` writes every file into a local *staging* folder first, exactly as into a local ``--out``
(:func:`local_dir`), and publishes each finished file to the remote in the order that makes a killed run safe::

    config.json          before any shard (a rerun must match it to resume)
    <shard>.tar          when the shard is complete (the upload is one PUT: an object store shows all or nothing)
    <shard>.stats.json   after its tar: a stats file on the remote means "this shard is finished there"
    manifest.json        last, listing only shards whose stats are there

So a killed run (even mid-upload) never leaves a listed shard that is incomplete, and a rerun resumes from what the
remote holds: :func:`pull` mirrors the remote's ``config.json`` and stats files into a fresh staging folder and
records the remote tars' sizes, and :func:`tar_problem` checks a finished shard's tar by its recorded size there
(a remote tar's sha256 would need a full download; the local check keeps it). A local ``--out`` is its own staging
folder and every publishing step is a no-op.

The staging folder is ``$FDA_STAGING_DIR/<digest of the URL>`` (default: the system's temporary folder); a tar is
deleted from it once uploaded, so it holds at most the shards in flight.
"""

import hashlib
import json
import os
import re
import shutil
import tempfile
from typing import Any, Dict, Optional, Sequence, Tuple

from fda.errors import ConfigError, EnvError, InputError
from fda.shards.location import PIPE, is_url
from fda.shards.schema import CONFIG, MANIFEST, file_digest

STAGING_ENV = "FDA_STAGING_DIR"
REMOTE_SIZES = ".remote-sizes.json"  # in a staging folder: the remote's tar sizes when the run started
_OWNED = re.compile(r"^[A-Za-z0-9_-]+-\d{6}\.(tar|stats\.json)$")


def is_remote(out: str) -> bool:
    """Whether an ``--out`` is a remote location (published through fsspec) rather than a local folder."""
    return is_url(out)


def local_dir(out: str) -> str:
    """The folder files of ``out`` are written into: ``out`` itself when local, else its staging folder (created)."""
    if not is_remote(out):
        return out
    base = os.environ.get(STAGING_ENV) or os.path.join(tempfile.gettempdir(), "fda-staging")
    path = os.path.join(base, hashlib.sha1(out.encode("utf-8")).hexdigest()[:16])
    os.makedirs(path, exist_ok=True)
    return path


def _fs(out: str) -> Tuple[Any, str]:
    """``(filesystem, path)`` of a remote ``out``.

    Raises:
        ConfigError: a read-only (HTTP, ``pipe:``) or unknown kind of location.
        EnvError: no fsspec backend for its protocol (s3fs for ``s3://``), with the install line.
    """
    import fsspec

    if out.startswith(("http://", "https://", PIPE)):
        raise ConfigError(f"--out {out}: HTTP and pipe: locations are read-only: preprocess into a folder or a "
                          "writable URL (s3://, gs://) and serve that")
    try:
        fs, path = fsspec.core.url_to_fs(out)
    except ImportError as err:
        raise EnvError(f"--out {out}: {err}: install the fsspec backend for it (s3: pip install 'fda[s3]')") from None
    except ValueError as err:
        raise ConfigError(f"--out {out}: {err}: pass a folder or a URL fsspec can write") from None
    return fs, path.rstrip("/")


def _remote_error(out: str, action: str, err: Exception) -> InputError:
    reason = " ".join(str(err).split())[:200]
    return InputError(f"--out {out}: {action} failed ({type(err).__name__}: {reason}): check the location, its "
                      "credentials (AWS_* variables for s3://, AWS_ENDPOINT_URL for a private server) and rerun")


def pull(out: str, overwrite: bool) -> None:
    """Mirror a remote ``out`` into a fresh staging folder: its ``config.json``, its stats files, and the sizes of
    its tars (for :func:`tar_problem`). With ``overwrite`` the remote's shard set files are deleted first.

    Raises:
        InputError: the remote cannot be listed or read.
    """
    if not is_remote(out):
        return
    fs, root = _fs(out)
    local = local_dir(out)
    shutil.rmtree(local)
    os.makedirs(local)
    try:
        fs.invalidate_cache()
        entries = fs.ls(root, detail=True) if fs.exists(root) else []
        names = {os.path.basename(e["name"].rstrip("/")): e for e in entries}
        owned = [n for n in names if _OWNED.match(n) or n in (CONFIG, MANIFEST)]
        if overwrite:
            for name in owned:
                fs.rm_file(f"{root}/{name}")
            names = {}
        wanted = [n for n in names if n == CONFIG or n.endswith(".stats.json")]
        for name, data in (fs.cat([f"{root}/{n}" for n in wanted]) if wanted else {}).items():
            with open(os.path.join(local, os.path.basename(name)), "wb") as f:
                f.write(data)
    except Exception as err:  # noqa: BLE001 - the backends raise their own types
        raise _remote_error(out, "reading what is there", err) from None
    sizes = {n: int(e.get("size") or 0) for n, e in names.items() if n.endswith(".tar")}
    with open(os.path.join(local, REMOTE_SIZES), "w", encoding="utf-8") as f:
        json.dump(sizes, f)


def publish(out: str, names: Sequence[str], *, keep: bool = True) -> None:
    """Upload the files ``names`` of the staging folder to a remote ``out``, one after the other, in that order (a
    no-op for a local ``out``). With ``keep=False`` each is deleted locally once uploaded.

    Raises:
        InputError: an upload failed (nothing later in ``names`` was uploaded).
    """
    if not is_remote(out):
        return
    fs, root = _fs(out)
    local = local_dir(out)
    for name in names:
        path = os.path.join(local, name)
        try:
            fs.put_file(path, f"{root}/{name}")
        except Exception as err:  # noqa: BLE001 - the backends raise their own types
            raise _remote_error(out, f"uploading {name}", err) from None
        if not keep:
            os.remove(path)
    fs.invalidate_cache(root)


def unpublish(out: str, name: str) -> None:
    """Delete ``name`` from a remote ``out`` if it is there (a no-op for a local ``out``): a stats file goes first
    when its shard is redone, so the shard counts as unfinished there too."""
    if not is_remote(out):
        return
    fs, root = _fs(out)
    try:
        if fs.exists(f"{root}/{name}"):
            fs.rm_file(f"{root}/{name}")
    except Exception as err:  # noqa: BLE001 - the backends raise their own types
        raise _remote_error(out, f"deleting {name}", err) from None
    fs.invalidate_cache(root)


def tar_problem(out: str, name: str, recorded: Dict[str, Any]) -> Optional[str]:
    """Why the finished shard ``name`` of ``out`` cannot stand (its tar missing or not the recorded one), or
    ``None``. A local tar is checked by size and sha256, a remote one by size (as :func:`pull` listed it)."""
    local = local_dir(out)
    tar_path = os.path.join(local, name)
    size: Optional[int] = None
    if is_remote(out):
        try:
            with open(os.path.join(local, REMOTE_SIZES), encoding="utf-8") as f:
                size = json.load(f).get(name)
        except (OSError, ValueError):
            pass
    elif os.path.isfile(tar_path):
        size = os.path.getsize(tar_path)
    if size is None:
        return "its tar is missing"
    if size != recorded.get("size"):
        return f"its tar is {size} bytes, {recorded.get('size')} recorded (damaged or replaced)"
    if not is_remote(out) and file_digest(tar_path)["sha256"] != recorded.get("sha256"):
        return "its tar's sha256 differs from the recorded one (damaged or replaced)"
    return None
