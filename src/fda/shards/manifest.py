"""A shard set's ``manifest.json`` read back: the set as a whole, and one split of it.

Every stage that reads shards (training, eval, embedding, the viewers) starts here, so a folder that is not a
finished shard set, a missing split or a missing shard file fails with the same one-line
:class:`~fda.errors.InputError` whichever command meets it. A shard set may be remote (a URL of a folder, a brace
pattern of tar names, a ``pipe:`` command: :mod:`fda.shards.location`); its manifest is read through the same opener
as its tars, and its shards' URLs are the manifest's names put into the location.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from fda.errors import InputError
from fda.shards.location import Location, read_member
from fda.shards.schema import MANIFEST


@dataclass(frozen=True)
class ShardInfo:
    """One tar shard of a split, with the manifest's counts."""

    url: str
    samples: int
    captions: int


@dataclass(frozen=True)
class SplitInfo:
    """A split of a shard set as the manifest describes it.

    Attributes:
        shards_dir: the shard set's location as given (a folder, a URL, a pattern of tar names).
        split: ``train``, ``val`` or ``test``.
        frames: frames per sample (T).
        size: frame side in pixels (frames are ``size x size``).
        videos: samples (videos) in the split.
        captions: captions in the split.
        shards: the non-empty shards, in manifest order.
        config: the manifest's preprocess config (mask parameters, ...).
        filled: the splits of the same manifest that hold samples the location selects (:func:`filled_splits`).
    """

    shards_dir: str
    split: str
    frames: int
    size: int
    videos: int
    captions: int
    shards: Tuple[ShardInfo, ...]
    config: Dict[str, Any]
    filled: Tuple[str, ...] = ()

    def pairs(self, captions: str) -> int:
        """Samples per epoch: every (video, caption) pair (``"all"``) or one per video (``"random"``)."""
        return self.captions if captions == "all" else self.videos

    @property
    def urls(self) -> List[str]:
        """The paths of the split's shards, in manifest order."""
        return [s.url for s in self.shards]


def manifest_bytes(shards_dir: str) -> Optional[bytes]:
    """The bytes of a shard set's ``manifest.json`` (local or remote), or ``None`` when it has none.

    Raises:
        InputError: it exists but cannot be read.
    """
    return read_member(shards_dir, MANIFEST)


def manifest_sha256(shards_dir: str) -> str:
    """The SHA-256 of a shard set's ``manifest.json`` (what eval and embed record; the empty string when none)."""
    data = manifest_bytes(shards_dir)
    return "" if data is None else hashlib.sha256(data).hexdigest()


def read_manifest(shards_dir: str) -> Optional[Dict[str, Any]]:
    """The manifest of a shard set, or ``None`` when it has none (yet).

    Raises:
        InputError: the manifest is unreadable, not JSON, or not a JSON object (one line naming it).
    """
    path = Location.parse(shards_dir).member(MANIFEST)
    data = manifest_bytes(shards_dir)
    if data is None:
        return None
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split())[:200]
        raise InputError(f"{path} is damaged ({type(err).__name__}: {reason}): rerun fda preprocess (with "
                         "--overwrite if it refuses)") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{path} is damaged (a JSON {type(manifest).__name__}, not an object): rerun fda "
                         "preprocess (with --overwrite if it refuses)")
    return manifest


def load_manifest(shards_dir: str) -> Dict[str, Any]:
    """The manifest of the finished shard set ``shards_dir``.

    Raises:
        InputError: no such folder, or no manifest in it (or at the URL).
    """
    location = Location.parse(shards_dir)
    if not location.remote and not os.path.isdir(shards_dir):
        raise InputError(f"shard folder {shards_dir!r} does not exist: run fda preprocess first or fix the path")
    manifest = read_manifest(shards_dir)
    if manifest is None:
        where = f" ({location.member(MANIFEST)} not found)" if location.remote else ""
        raise InputError(f"{shards_dir!r} has no {MANIFEST}{where}: not a finished shard set, run fda preprocess "
                         "or fix the location")
    return manifest


def split_shards(manifest: Dict[str, Any], split: str) -> List[str]:
    """File names of the non-empty shards of ``split``, in order."""
    info = manifest.get("splits", {}).get(split)
    if not info:
        return []
    return [s["name"] for s in info["shards"] if s["samples"] > 0]


def _listed(manifest: Dict[str, Any], name: str) -> bool:
    return any(s.get("name") == name for info in manifest.get("splits", {}).values() for s in info.get("shards", []))


def filled_splits(manifest: Dict[str, Any], shards_dir: Optional[str] = None) -> List[str]:
    """The splits of a manifest that hold samples, in manifest order; with ``shards_dir``, only those with shards
    its location selects (a brace pattern of tar names may name one split's tars)."""
    location = Location.parse(shards_dir) if shards_dir else None
    return [s for s in manifest.get("splits", {})
            if any(location is None or location.selects(name) for name in split_shards(manifest, s))]


def load_split(shards_dir: str, split: str, manifest: Optional[Dict[str, Any]] = None) -> SplitInfo:
    """Read the manifest of ``shards_dir`` (unless given) and describe ``split``.

    Raises:
        InputError: no such folder, no manifest, no such split, or a split with no samples or missing shard files.
    """
    if manifest is None:
        manifest = load_manifest(shards_dir)
    location = Location.parse(shards_dir)
    unknown = [name for name in location.tars or () if not _listed(manifest, name)]
    if unknown:
        raise InputError(f"{shards_dir!r} names {len(unknown)} tar(s) its {MANIFEST} does not list, e.g. "
                         f"{unknown[0]!r}: fix the brace pattern or rerun fda preprocess")
    splits = manifest.get("splits", {})
    info = splits.get(split)
    if not info:
        have = ", ".join(sorted(splits)) or "none"
        raise InputError(f"shard set {shards_dir!r} has no {split!r} split (it has: {have}): "
                         f"preprocess that split or pass another --split")
    shards = tuple(ShardInfo(location.member(s["name"]), int(s["samples"]), int(s.get("captions", 0)))
                   for s in info.get("shards", []) if int(s["samples"]) > 0 and location.selects(s["name"]))
    if not shards:
        raise InputError(f"split {split!r} of {shards_dir!r} has no samples: rerun fda preprocess for it")
    # a remote set is not probed shard by shard: a shard missing there fails when it is read
    missing = [] if location.remote else [s.url for s in shards if not os.path.isfile(s.url)]
    if missing:
        raise InputError(f"{len(missing)} shard(s) of split {split!r} listed in the manifest are missing, e.g. "
                         f"{missing[0]!r}: copy the whole shard folder or rerun fda preprocess")
    videos = sum(s.samples for s in shards)
    captions = sum(s.captions for s in shards) or int(info.get("captions", 0)) or videos
    return SplitInfo(shards_dir=shards_dir, split=split, frames=int(info.get("frames", 0)),
                     size=int(info.get("size", 0)), videos=videos, captions=captions, shards=shards,
                     config=dict(manifest.get("config", {})), filled=tuple(filled_splits(manifest, shards_dir)))


def require_captions(shards_dir: str, split: str, command: str, manifest: Optional[Dict[str, Any]] = None) -> None:
    """Refuse a split whose videos have no captions (a library preprocessed without a captions file); the manifest
    is read unless given.

    Raises:
        InputError: the split holds videos but no caption; the message says what works on it instead.
    """
    if manifest is None:
        manifest = load_manifest(shards_dir)
    info = manifest.get("splits", {}).get(split) or {}
    if manifest.get("uncaptioned") or (int(info.get("videos", 0)) > 0 and int(info.get("captions", 1)) == 0):
        what = "shard set" if manifest.get("uncaptioned") else f"split {split!r} of"
        raise InputError(f"{what} {shards_dir!r} has no captions (preprocessed without a captions file): "
                         f"{command} needs captions: add captions.csv (video,caption[,split]) beside the videos and "
                         f"rerun fda preprocess; fda embed and fda search work on it as it is")
