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

    <key>.json            meta: schema_version, video_id, split, source, sampled indices, fps, duration, mask
                          (its parameters as :func:`mask_json` records them, per-frame coverage and fallback)
    <key>.captions.json   list of every caption of the video
    <key>.f{i:02d}.jpg    frame i, RGB, size x size, JPEG
    <key>.m{i:02d}.png    mask i, 1-bit PNG, 0 or 255, aligned pixel for pixel with frame i

A stock ``webdataset.WebDataset(url).decode("rgb")`` reads every member with no fda code.
"""

import hashlib
import json
import os
import re
from dataclasses import fields
from typing import Any, Dict, Mapping

from fda.config import MaskConfig
from fda.errors import InputError
from fda.options import fields_with

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


MAX_KEY = 86
"""The longest sample key: ``<key>.captions.json`` must fit ustar's 100-byte member names."""


def sample_key(video_id: str) -> str:
    """A webdataset-safe key for ``video_id``.

    Ids made of ``[A-Za-z0-9_-]`` of up to :data:`MAX_KEY` characters are kept as they are (``video0``,
    ``-4wsuPCjDBc_5_15``); any other id (dots, spaces, non-ASCII, longer) becomes its first safe characters plus a
    short digest, so distinct ids stay distinct and every member name fits a ustar header.
    """
    if KEY_RE.match(video_id) and len(video_id) <= MAX_KEY:
        return video_id
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", video_id).strip("_")[:MAX_KEY - 11]  # keys that fitted are unchanged
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


MASK_RULE = "gray |frame - partner| > tau; close then open (square kernel); drop 8-connected components < min_area"
SHOWN_MASK_FIELDS = ("tau", "kernel", "min_area", "empty_mask", "diff_mode")  # the paper's rule, always recorded


def mask_json(mask: MaskConfig) -> Dict[str, Any]:
    """The json form of ``mask`` (a sample's ``mask``, the manifest's ``mask``), in the order the shard format writes
    it (the same bytes for the same parameters): the paper's parameters (:data:`SHOWN_MASK_FIELDS`) and ``rule``
    always; every other option only where it is not its default (``camera_motion``, ``normalize_brightness``: when
    on); the rule and its parameters (``role="sample-unless-diff"``) only for a rule other than ``diff``. So the
    paper's rule writes exactly the bytes it always did, and a new :class:`fda.config.MaskConfig` field is recorded
    with no edit here."""
    params: Dict[str, Any] = {name: getattr(mask, name) for name in SHOWN_MASK_FIELDS}
    params["rule"] = MASK_RULE
    rule_fields = fields_with(type(mask), role="sample-unless-diff")
    params.update({f.name: getattr(mask, f.name) for f in fields(mask)
                   if f.name not in SHOWN_MASK_FIELDS + rule_fields and getattr(mask, f.name) != f.default})
    if mask.mask_rule != "diff":  # "rule" then holds that rule's text (fda.pipeline.mask_rules.mask_record)
        params.update({name: getattr(mask, name) for name in rule_fields})
    return params


def mask_from_json(record: Mapping[str, Any]) -> MaskConfig:
    """Read back what :func:`mask_json` wrote (a sample's ``mask``, the manifest's ``mask`` or its ``config``).

    Raises:
        InputError: the record lacks one of the always-recorded fields.
    """
    missing = [name for name in SHOWN_MASK_FIELDS if name not in record]
    if missing:
        raise InputError(f"mask record without {', '.join(missing)}: not written by fda preprocess "
                         f"(schema_version {SCHEMA_VERSION})")
    return MaskConfig(**{f.name: record[f.name] for f in fields(MaskConfig) if f.name in record})


def shown_mask(record: Mapping[str, Any]) -> Dict[str, Any]:
    """The mask parameters of a record or config dict for reports: the always-recorded ones (``None`` where one is
    absent), then the other options that were on (not at their default: ``camera_motion``,
    ``normalize_brightness``) and a rule other than ``diff`` with its parameters (``mask_rule``,
    ``flow_threshold``), as :func:`mask_json` records them."""
    shown = {name: record.get(name) for name in SHOWN_MASK_FIELDS}
    rule_fields = fields_with(MaskConfig, role="sample-unless-diff")
    shown.update({f.name: record[f.name] for f in fields(MaskConfig)
                  if f.name not in SHOWN_MASK_FIELDS + rule_fields and record.get(f.name) not in (None, f.default)})
    if record.get("mask_rule") not in (None, "diff"):
        shown.update({name: record.get(name) for name in rule_fields})
    return shown
