"""``--val-from-train N``: hold out N training videos, chosen by key, to validate on and keep ``best.pt`` by.

For a shard set without a ``val`` split (MSR-VTT, ActivityNet, a folder without ``val`` rows) the default keeps no
``best.pt`` (selecting on test would bias the reported number). This opt-in gives a proper one at the price of N
training videos: the N videos whose keys have the smallest SHA-1 digests (the same N for the same set, whatever the
shard order or seed) are copied, member by member, into a one-split shard set ``RUN_DIR/val-from-train/`` (split
``val``) and left out of the training stream; the run validates on that set. ``train_config.json`` lists the keys.
The training shards are read through their location's opener, so a set at a URL works as a folder does.
"""

import contextlib
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass, replace
from typing import Dict, FrozenSet, Iterator, List

from fda.errors import ConfigError
from fda.shards.location import is_url, open_url, recorded
from fda.shards.manifest import ShardInfo, SplitInfo
from fda.shards.schema import CAPTIONS, MANIFEST, SCHEMA_VERSION, shard_name, write_json_atomic

HOLDOUT_DIR = "val-from-train"
HOLDOUT_SPLIT = "val"
SELECTED_ON = "val-from-train"
"""What ``best.pt`` records as the split that chose it (``selected_on``)."""


@dataclass(frozen=True)
class Holdout:
    """The held-out videos of a run.

    Attributes:
        shards_dir: the one-split shard set holding them (split :data:`HOLDOUT_SPLIT`).
        keys: their sample keys, sorted.
        train: the training split without them (counts per shard reduced).
    """

    shards_dir: str
    keys: FrozenSet[str]
    train: SplitInfo

    def record(self) -> Dict[str, object]:
        """What ``train_config.json`` records."""
        return {"videos": len(self.keys), "keys": sorted(self.keys), "dir": os.path.abspath(self.shards_dir),
                "rule": "the N keys with the smallest SHA-1 digests of the training split"}


def _key(member: str) -> str:
    return member.split(".", 1)[0]  # webdataset's rule: the key ends at the first dot


@contextlib.contextmanager
def _open_tar(url: str) -> Iterator[tarfile.TarFile]:
    """A shard for reading its members in order: a local file with random access, anything else (a URL, a
    ``pipe:`` command) streamed once through the shard set's own opener."""
    if not is_url(url):
        with tarfile.open(url) as tar:
            yield tar
        return
    with open_url(url) as f, tarfile.open(fileobj=f, mode="r|") as tar:
        yield tar


def _captions_per_key(info: SplitInfo) -> List[Dict[str, int]]:
    """Per shard, its sample keys in tar order with each one's caption count (one pass over each shard)."""
    out = []
    for shard in info.shards:
        counts: Dict[str, int] = {}
        with _open_tar(shard.url) as tar:
            for member in tar:
                if member.isfile():
                    key = _key(member.name)
                    counts.setdefault(key, 0)
                    if member.name.endswith("." + CAPTIONS):
                        counts[key] = len(json.loads(tar.extractfile(member).read()))
        out.append(counts)
    return out


def choose(keys: List[str], n: int) -> FrozenSet[str]:
    """The ``n`` keys with the smallest SHA-1 digests (ties impossible in practice; then by key)."""
    return frozenset(sorted(keys, key=lambda k: (hashlib.sha1(k.encode("utf-8")).hexdigest(), k))[:n])


def plan_holdout(info: SplitInfo, n: int, min_train: int = 2) -> Holdout:
    """Choose ``n`` videos of ``info`` (:func:`choose`) and the training split without them (nothing is written).

    Raises:
        ConfigError: ``n`` leaves fewer than ``min_train`` training videos.
    """
    per_shard = _captions_per_key(info)
    every = [k for keys in per_shard for k in keys]
    if len(every) - n < min_train:
        raise ConfigError(f"--val-from-train {n} leaves {max(0, len(every) - n)} of the {len(every)} training videos "
                          f"(a batch needs at least {min_train}): hold out fewer videos")
    held = choose(every, n)
    shards = []
    for shard, counts in zip(info.shards, per_shard):
        mine = [k for k in counts if k in held]
        caps = sum(counts[k] for k in mine)
        shards.append(ShardInfo(shard.url, shard.samples - len(mine), max(0, shard.captions - caps)))
    kept = tuple(s for s in shards if s.samples > 0)
    train = replace(info, videos=sum(s.samples for s in kept), captions=sum(s.captions for s in kept) or 1,
                    shards=kept)
    return Holdout(HOLDOUT_DIR, held, train)


def write_holdout(info: SplitInfo, holdout: Holdout, run_dir: str) -> Holdout:
    """Copy the held-out samples of ``info``, member by member, into ``RUN_DIR/val-from-train`` (split ``val``);
    returns ``holdout`` with that folder. Only the shards that hold one are read (those the plan took samples from)."""
    kept = {s.url: s.samples for s in holdout.train.shards}
    holding = [s for s in info.shards if kept.get(s.url, 0) < s.samples]
    out = os.path.join(run_dir, HOLDOUT_DIR)
    os.makedirs(out, exist_ok=True)
    name = shard_name(HOLDOUT_SPLIT, 0)
    tmp = os.path.join(out, name + ".partial")
    captions = 0
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as dst:
        for shard in holding:
            with _open_tar(shard.url) as src:
                for member in src:
                    if member.isfile() and _key(member.name) in holdout.keys:
                        data = src.extractfile(member).read()
                        dst.addfile(member, io.BytesIO(data))
                        if member.name.endswith("." + CAPTIONS):
                            captions += len(json.loads(data))
    os.replace(tmp, os.path.join(out, name))
    write_json_atomic(os.path.join(out, MANIFEST), {
        "schema_version": SCHEMA_VERSION, "layout": HOLDOUT_DIR, "config": info.config,
        "held_out_from": recorded(info.shards_dir),
        "splits": {HOLDOUT_SPLIT: {"frames": info.frames, "size": info.size, "videos": len(holdout.keys),
                                   "captions": captions,
                                   "shards": [{"name": name, "samples": len(holdout.keys), "captions": captions}]}},
        "failures": []})
    return replace(holdout, shards_dir=out)
