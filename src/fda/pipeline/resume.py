"""Resuming ``fda preprocess``: what a shard is made from (its fingerprint), and whether a finished one still stands.

A finished shard's stats file records the fingerprint of its inputs (each video's real path, size, mtime and
captions, and the data options: :data:`fda.config.DATA_FIELDS`); a rerun keeps the shard while its fingerprint and
tar still match, and says why it redoes one. :func:`prepare_out` refuses an ``--out`` made with other data options;
:func:`remove_stale` deletes the shards no planned task owns.
"""

import glob
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from fda.config import PreprocessConfig
from fda.errors import ConfigError
from fda.files import make_out_dir
from fda.options import leaf_fields, spelling
from fda.pipeline.datasets import Dataset, VideoItem
from fda.shards.schema import CONFIG, MANIFEST, SCHEMA_VERSION, read_json, shard_name, stats_name, write_json_atomic
from fda.shards.store import local_dir, publish, pull, tar_problem, unpublish
from fda.shards.writer import PARTIAL


@dataclass(frozen=True)
class ShardTask:
    """One unit of work: the videos of one shard, and the fingerprint of what they are made from."""

    split: str
    index: int
    items: Tuple[VideoItem, ...]
    inputs: Optional[Dict[str, Any]] = None

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index)


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def video_inputs(item: VideoItem) -> Dict[str, Any]:
    """One video's part of a shard fingerprint: its id, real path, size, mtime and a digest of its captions."""
    size = mtime = None
    if item.path is not None:
        try:
            st = os.stat(item.path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            pass
    return {"video_id": item.video_id, "path": item.path, "size": size, "mtime_ns": mtime,
            "captions": digest(list(item.captions))[:16]}


def with_options(inputs: Dict[str, Any], cfg: PreprocessConfig) -> Dict[str, Any]:
    """A shard's full fingerprint: its videos, the data options, and one digest of both."""
    full = {"options": cfg.data_fields(), "videos": inputs["videos"]}
    return {"digest": digest(full), **full}


def recorded_value(cls: type, name: str, record: Dict[str, Any]) -> Any:
    """The value of data option ``name`` a record of config class ``cls`` stands for: an option it leaves out
    (recorded only when on, or for a rule other than ``diff``) was at its default."""
    if name in record:
        return record[name]
    return next((f.default for f in leaf_fields(cls) if f.name == name), None)


def what_changed(old: Any, new: Dict[str, Any], cls: type = PreprocessConfig) -> Optional[str]:
    """The first difference between a recorded fingerprint and this run's (of config class ``cls``), in words;
    ``None`` when they agree."""
    if not isinstance(old, dict) or "digest" not in old:
        return "it records no input fingerprint (written by an older fda)"
    if old["digest"] == new["digest"]:
        return None
    before_options = old.get("options", {})
    for name in list(new["options"]) + [k for k in before_options if k not in new["options"]]:
        if (name in before_options, before_options.get(name)) != (name in new["options"], new["options"].get(name)):
            was, asks = recorded_value(cls, name, before_options), recorded_value(cls, name, new["options"])
            if was == asks:  # recorded by one fda version and not by the other
                how = "recorded now" if name in new["options"] else "no longer recorded"
                return f"{spelling(cls, name)} {asks!r} is {how} (the shard was written by another fda version)"
            return f"{spelling(cls, name)} was {was!r}, now {asks!r}"
    before = {v["video_id"]: v for v in old.get("videos", [])}
    now = {v["video_id"]: v for v in new["videos"]}
    for vid, v in now.items():
        o = before.get(vid)
        if o is None:
            return f"video {vid!r} is new in this shard"
        if o.get("path") != v["path"]:
            return f"video {vid!r} is now {v['path']} (was {o.get('path')})"
        if (o.get("size"), o.get("mtime_ns")) != (v["size"], v["mtime_ns"]):
            return f"video {vid!r} changed on disk (size {o.get('size')} -> {v['size']}, or its mtime)"
        if o.get("captions") != v["captions"]:
            return f"the captions of video {vid!r} changed"
    gone = [vid for vid in before if vid not in now]
    if gone:
        return f"video {gone[0]!r} is no longer in this shard"
    return "the order of its videos changed"


def why_redo(stats: Dict[str, Any], task: ShardTask, cfg: PreprocessConfig) -> Optional[str]:
    """Why a finished shard must be written again, or ``None`` when it stands."""
    inputs = task.inputs or {"videos": [video_inputs(item) for item in task.items]}
    changed = what_changed(stats.get("inputs"), with_options(inputs, cfg), type(cfg))
    if changed:
        return f"inputs changed: {changed}"
    if cfg.retry_failed:
        failed = sum(1 for v in stats.get("videos", []) if v.get("status") != "ok")
        if failed:
            return f"retrying {failed} failed video{'s' if failed > 1 else ''} (--retry-failed)"
    if stats.get("samples", 0) == 0:
        return None
    return tar_problem(cfg.out, task.name, stats.get("tar") or {})


def owned_files(out: str) -> List[str]:
    pats = ["*-[0-9][0-9][0-9][0-9][0-9][0-9].tar", "*-[0-9][0-9][0-9][0-9][0-9][0-9].stats.json",
            "*" + PARTIAL, "*.json.tmp*", MANIFEST, CONFIG]
    return sorted({p for pat in pats for p in glob.glob(os.path.join(glob.escape(out), pat))})


def prepare_out(cfg: PreprocessConfig, dataset: Dataset) -> None:
    pull(cfg.out, cfg.overwrite)  # a remote --out: what it holds, mirrored into the staging folder
    out = make_out_dir(local_dir(cfg.out))
    if cfg.overwrite:
        for path in owned_files(out):
            os.remove(path)
    config_path = os.path.join(out, CONFIG)
    wanted = {"schema_version": SCHEMA_VERSION, "data": {**cfg.data_fields(), "layout": dataset.layout}}
    if os.path.isfile(config_path):
        old = read_json(config_path)
        if old.get("schema_version") != SCHEMA_VERSION:
            raise ConfigError(f"{cfg.out} holds shards of schema version {old.get('schema_version')}; this fda writes "
                              f"{SCHEMA_VERSION}: pass --overwrite to start over or choose another --out")
        for name in list(wanted["data"]) + [k for k in old["data"] if k not in wanted["data"]]:
            was, value = recorded_value(type(cfg), name, old["data"]), recorded_value(type(cfg), name, wanted["data"])
            if was != value:
                raise ConfigError(f"{cfg.out} holds shards made with {spelling(cfg, name)} {was!r}, this run asks "
                                  f"{value!r}: pass --overwrite to start over or choose another --out")
    elif any(os.path.basename(p) != CONFIG for p in owned_files(out)):
        raise ConfigError(f"{cfg.out} holds shard files but no {CONFIG}: pass --overwrite to start over "
                          "or choose another --out")
    else:
        write_json_atomic(config_path, wanted)
        publish(cfg.out, [CONFIG])


def finished_stats(task: ShardTask, cfg: PreprocessConfig) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """``(stats, None)`` for a task an earlier run finished and that still stands; else ``(None, why it is redone)``
    (``why`` is ``None`` for a task never finished). Cleans up what an interrupted or outdated task left."""
    out = local_dir(cfg.out)
    stats_path = os.path.join(out, stats_name(task.split, task.index))
    why: Optional[str] = None
    if os.path.isfile(stats_path):
        try:
            stats = read_json(stats_path)
            why = why_redo(stats, task, cfg)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            why = f"its stats file is unreadable ({type(err).__name__})"
        if why is None:
            return stats, None
        os.remove(stats_path)  # first: from here on the shard counts as not finished, whatever happens
        unpublish(cfg.out, stats_name(task.split, task.index))
    for leftover in glob.glob(os.path.join(glob.escape(out), glob.escape(task.name)) + PARTIAL + "*"):
        os.remove(leftover)
    tar_path = os.path.join(out, task.name)
    if os.path.isfile(tar_path):  # outdated, or killed between the tar's rename and the stats write
        os.remove(tar_path)
    return None, why


def remove_stale(out: str, tasks: Sequence[ShardTask]) -> List[str]:
    """Delete shard and stats files of ``out`` that no planned task owns (the dataset shrank); returns their names."""
    planned = {t.name[:-len(".tar")] for t in tasks}
    stale = []
    for path in owned_files(out):
        name = os.path.basename(path)
        if name in (MANIFEST, CONFIG) or ".json.tmp" in name:
            continue
        if name.split(".", 1)[0] not in planned:
            os.remove(path)
            stale.append(name)
    return stale
