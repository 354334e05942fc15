"""The shard format: a versioned contract between ``fda preprocess`` and every later stage.

A shard set is a folder::

    SHARDS_DIR/
      manifest.json              full config, ffmpeg version, shards and counts per split, every failure
      config.json                the data-shaping config, written first (a rerun must match it to resume)
      train-000000.tar           one WebDataset sample per video
      train-000000.stats.json    that shard task's per-video status, input fingerprint and tar size + sha256
                                 (written last: the shard is done)
      test-000000.tar ...

One sample per video, under a key that webdataset cannot mangle (``^[A-Za-z0-9_-]+$``: it splits member names at
the first dot). Members (``T`` frames, ``i`` two-digit frame number)::

    <key>.json            meta: schema_version, video_id, split, source, sampled indices, fps, duration, mask params
    <key>.captions.json   list of every caption of the video
    <key>.f{i:02d}.jpg    frame i, RGB, size x size, JPEG
    <key>.m{i:02d}.png    mask i, 1-bit PNG, 0 or 255, aligned pixel for pixel with frame i

A stock ``webdataset.WebDataset(url).decode("rgb")`` reads every member with no fda code.
"""

import hashlib
import json
import os
import re
from typing import Any, Dict, List, Optional

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
CONFIG = "config.json"
KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")
META = "json"
CAPTIONS = "captions.json"


def frame_member(i: int) -> str:
    """Member suffix of frame ``i``: ``f00.jpg``."""
    return f"f{i:02d}.jpg"


def mask_member(i: int) -> str:
    """Member suffix of mask ``i``: ``m00.png``."""
    return f"m{i:02d}.png"


def sample_key(video_id: str) -> str:
    """A webdataset-safe key for ``video_id``.

    Ids made of ``[A-Za-z0-9_-]`` are kept as they are (``video0``, ``-4wsuPCjDBc_5_15``); any other id (dots,
    spaces, non-ASCII) becomes its safe characters plus a short digest, so distinct ids stay distinct.
    """
    if KEY_RE.match(video_id):
        return video_id
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", video_id).strip("_")[:80]
    digest = hashlib.sha1(video_id.encode("utf-8")).hexdigest()[:10]
    return f"{safe}_{digest}" if safe else digest


def shard_name(split: str, index: int) -> str:
    """File name of shard ``index`` of ``split``: ``train-000000.tar``."""
    return f"{split}-{index:06d}.tar"


def stats_name(split: str, index: int) -> str:
    """File name of the stats of shard ``index`` of ``split``."""
    return f"{split}-{index:06d}.stats.json"


def write_json_atomic(path: str, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename (never half-written)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False, sort_keys=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def file_digest(path: str) -> Dict[str, Any]:
    """``{"size": bytes, "sha256": hex digest}`` of a file (read in 1 MiB blocks)."""
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
            size += len(block)
    return {"size": size, "sha256": sha.hexdigest()}


def read_json(path: str) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_manifest(shards_dir: str) -> Optional[Dict[str, Any]]:
    """The manifest of a shard set, or ``None`` when it has none (yet)."""
    path = os.path.join(shards_dir, MANIFEST)
    return read_json(path) if os.path.isfile(path) else None


def split_shards(manifest: Dict[str, Any], split: str) -> List[str]:
    """File names of the non-empty shards of ``split``, in order."""
    info = manifest.get("splits", {}).get(split)
    if not info:
        return []
    return [s["name"] for s in info["shards"] if s["samples"] > 0]
