"""A shard set's ``manifest.json`` read back: the set as a whole, and one split of it.

Every stage that reads shards (training, eval, embedding, the viewers) starts here, so a folder that is not a
finished shard set, a missing split or a missing shard file fails with the same one-line
:class:`~fda.errors.InputError` whichever command meets it.
"""

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from fda.errors import InputError
from fda.shards.schema import MANIFEST, read_json


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
        shards_dir: the shard set folder.
        split: ``train``, ``val`` or ``test``.
        frames: frames per sample (T).
        size: frame side in pixels (frames are ``size x size``).
        videos: samples (videos) in the split.
        captions: captions in the split.
        shards: the non-empty shards, in manifest order.
        config: the manifest's preprocess config (mask parameters, ...).
    """

    shards_dir: str
    split: str
    frames: int
    size: int
    videos: int
    captions: int
    shards: Tuple[ShardInfo, ...]
    config: Dict[str, Any]

    def pairs(self, captions: str) -> int:
        """Samples per epoch: every (video, caption) pair (``"all"``) or one per video (``"random"``)."""
        return self.captions if captions == "all" else self.videos

    @property
    def urls(self) -> List[str]:
        """The paths of the split's shards, in manifest order."""
        return [s.url for s in self.shards]


def read_manifest(shards_dir: str) -> Optional[Dict[str, Any]]:
    """The manifest of a shard set, or ``None`` when it has none (yet).

    Raises:
        InputError: the manifest is unreadable, not JSON, or not a JSON object (one line naming it).
    """
    path = os.path.join(shards_dir, MANIFEST)
    if not os.path.isfile(path):
        return None
    try:
        manifest = read_json(path)
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
        InputError: no such folder, or no manifest in it.
    """
    if not os.path.isdir(shards_dir):
        raise InputError(f"shard folder {shards_dir!r} does not exist: run fda preprocess first or fix the path")
    manifest = read_manifest(shards_dir)
    if manifest is None:
        raise InputError(f"{shards_dir!r} has no {MANIFEST}: not a finished shard set, run fda preprocess")
    return manifest


def split_shards(manifest: Dict[str, Any], split: str) -> List[str]:
    """File names of the non-empty shards of ``split``, in order."""
    info = manifest.get("splits", {}).get(split)
    if not info:
        return []
    return [s["name"] for s in info["shards"] if s["samples"] > 0]


def filled_splits(manifest: Dict[str, Any]) -> List[str]:
    """The splits of a manifest that hold samples, in manifest order."""
    return [s for s in manifest.get("splits", {}) if split_shards(manifest, s)]


def load_split(shards_dir: str, split: str, manifest: Optional[Dict[str, Any]] = None) -> SplitInfo:
    """Read the manifest of ``shards_dir`` (unless given) and describe ``split``.

    Raises:
        InputError: no such folder, no manifest, no such split, or a split with no samples or missing shard files.
    """
    if manifest is None:
        manifest = load_manifest(shards_dir)
    splits = manifest.get("splits", {})
    info = splits.get(split)
    if not info:
        have = ", ".join(sorted(splits)) or "none"
        raise InputError(f"shard set {shards_dir!r} has no {split!r} split (it has: {have}): "
                         f"preprocess that split or pass another --split")
    shards = tuple(ShardInfo(os.path.join(shards_dir, s["name"]), int(s["samples"]), int(s.get("captions", 0)))
                   for s in info.get("shards", []) if int(s["samples"]) > 0)
    if not shards:
        raise InputError(f"split {split!r} of {shards_dir!r} has no samples: rerun fda preprocess for it")
    missing = [s.url for s in shards if not os.path.isfile(s.url)]
    if missing:
        raise InputError(f"{len(missing)} shard(s) of split {split!r} listed in the manifest are missing, e.g. "
                         f"{missing[0]!r}: copy the whole shard folder or rerun fda preprocess")
    videos = sum(s.samples for s in shards)
    captions = sum(s.captions for s in shards) or int(info.get("captions", 0)) or videos
    return SplitInfo(shards_dir=shards_dir, split=split, frames=int(info.get("frames", 0)),
                     size=int(info.get("size", 0)), videos=videos, captions=captions, shards=shards,
                     config=dict(manifest.get("config", {})))


def require_captions(shards_dir: str, split: str, command: str) -> None:
    """Refuse a split whose videos have no captions (a library preprocessed without a captions file).

    Raises:
        InputError: the split holds videos but no caption; the message says what works on it instead.
    """
    manifest = load_manifest(shards_dir)
    info = manifest.get("splits", {}).get(split) or {}
    if manifest.get("uncaptioned") or (int(info.get("videos", 0)) > 0 and int(info.get("captions", 1)) == 0):
        what = "shard set" if manifest.get("uncaptioned") else f"split {split!r} of"
        raise InputError(f"{what} {shards_dir!r} has no captions (preprocessed without a captions file): "
                         f"{command} needs captions: add captions.csv (video,caption[,split]) beside the videos and "
                         f"rerun fda preprocess; fda embed and fda search work on it as it is")
