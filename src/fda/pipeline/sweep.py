"""Several shard sets that differ only in the mask threshold tau, from one decode of each video.

A tau sweep needs one shard set per tau, and everything but the masks is the same in all of them: the sampled
frames, their partners (the adjacent decoded frame each is differenced with), the JPEG bytes. So each video is
decoded once, and only the mask step (:func:`fda.pipeline.masks.clip_masks`) runs once per tau. Every shard set is
exactly what ``fda preprocess --tau X`` writes (same tars byte for byte, same ``config.json``, a manifest from
:func:`fda.pipeline.preprocess.build_manifest`), so each can be resumed, trained on and evaluated like any other.

This reuses ``fda.pipeline.preprocess``'s per-video helpers (sampling + exact decode, encoders, mask parameters)
rather than copying them; ``tests/test_experiments.py`` checks the byte equality so the two cannot drift apart.
"""

import dataclasses
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from fda.config import PreprocessConfig
from fda.errors import ConfigError, InputError
from fda.pipeline import preprocess as pre
from fda.pipeline.datasets import VideoItem, load_dataset
from fda.pipeline.masks import clip_masks
from fda.pipeline.video import VideoError, check_decoder
from fda.shards.schema import MANIFEST, sample_key, stats_name, write_json_atomic
from fda.shards.writer import ShardWriter, sample_members

log = logging.getLogger(__name__)


def _check_same_data(cfgs: Sequence[PreprocessConfig]) -> None:
    """Every config must differ from the first only in ``tau`` and ``out``."""
    first = {k: v for k, v in dataclasses.asdict(cfgs[0]).items() if k not in ("tau", "out")}
    for cfg in cfgs[1:]:
        other = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("tau", "out")}
        if other != first:
            diff = sorted(k for k in first if first[k] != other[k])
            raise ConfigError(f"a tau sweep shares one decode, so only --tau and --out may differ; also differs: "
                              f"{', '.join(diff)}")
    outs = [os.path.abspath(c.out) for c in cfgs]
    if len(set(outs)) != len(outs):
        raise ConfigError("every tau needs its own --out folder")


def video_members(item: VideoItem, cfgs: Sequence[PreprocessConfig]
                  ) -> Tuple[List[Optional[List[tuple]]], Dict[str, Any]]:
    """One decode of ``item``, then the sample's tar members for each config (only the masks differ).

    Returns:
        ``(members per config or None each on failure, status record)``, as
        :func:`fda.pipeline.preprocess.process_video` returns them for one config.
    """
    cfg0 = cfgs[0]
    key = sample_key(item.video_id)
    record: Dict[str, Any] = {"video_id": item.video_id, "key": key, "source": item.source, "status": "ok",
                              "error": None}
    try:
        if item.path is None:
            raise VideoError("listed video not found under the dataset root")
        if not item.captions:
            raise VideoError("no caption")
        info, total, indices, partners, decoded = pre._sample_and_decode(item.path, cfg0.frames_for(item.split), cfg0)
        frames = np.stack([decoded[int(i)] for i in indices])  # [T, H, W, 3] RGB
        other = np.stack([decoded[int(i)] for i in partners])  # [T, H, W, 3] the frames they are differenced with
        jpegs = [pre._encode_jpeg(f, cfg0.jpeg_quality) for f in frames]  # same bytes for every tau
        out: List[Optional[List[tuple]]] = []
        for cfg in cfgs:
            masks, fell_back = clip_masks(frames, other, tau=cfg.tau, kernel=cfg.kernel, min_area=cfg.min_area,
                                          empty_mask=cfg.empty_mask)
            meta = {"video_id": item.video_id, "key": key, "split": item.split, "source": item.source,
                    "num_frames": int(total), "indices": indices.tolist(), "partners": partners.tolist(),
                    "fps": round(info.fps, 6), "duration": round(info.duration, 6), "width": info.width,
                    "height": info.height, "codec": info.codec, "size": cfg.size, "decoder": cfg.decoder,
                    "num_captions": len(item.captions),
                    "mask": {**pre._mask_params(cfg), "fallback": fell_back.tolist(),
                             "coverage": [round(float(m.mean()), 6) for m in masks]}}
            out.append(sample_members(key, meta, item.captions, jpegs, [pre._encode_mask(m) for m in masks]))
        return out, record
    except VideoError as err:
        record.update(status="failed", error=str(err))
        return [None] * len(cfgs), record


def run_sweep_task(task: "pre.ShardTask", cfgs: Sequence[PreprocessConfig]) -> List[Dict[str, Any]]:
    """Write one shard task's tar and stats into every config's folder; returns the stats per config."""
    pre._init_worker(None)
    writers = [ShardWriter(os.path.join(cfg.out, task.name)) for cfg in cfgs]
    records: List[Dict[str, Any]] = []
    samples = captions = 0
    try:
        for item in task.items:
            members, record = video_members(item, cfgs)
            if record["status"] == "ok":
                for writer, m in zip(writers, members):
                    writer.write(m)
                samples += 1
                captions += len(item.captions)
            records.append(record)
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    out = []
    for writer, cfg in zip(writers, cfgs):
        if samples:
            writer.commit()
        else:
            writer.abort()
        stats = {"schema_version": pre.SCHEMA_VERSION, "split": task.split, "index": task.index,
                 "name": task.name if samples else None, "samples": samples, "captions": captions,
                 "videos": [dict(r) for r in records]}
        write_json_atomic(os.path.join(cfg.out, stats_name(task.split, task.index)), stats)
        out.append(stats)
    return out


@dataclasses.dataclass
class SweepShards:
    """The shard sets of a tau sweep."""

    results: List["pre.PreprocessResult"]
    seconds: float

    @property
    def outs(self) -> List[str]:
        """The shard folders, in the order of the configs."""
        return [r.out for r in self.results]


def preprocess_taus(cfgs: Sequence[PreprocessConfig]) -> SweepShards:
    """Write one shard set per config, decoding every video once (configs differ only in ``tau`` and ``out``).

    Resumable like ``fda preprocess``: a shard task is redone only where some config lacks its stats.

    Raises:
        ConfigError: configs that differ in more than tau/out, or an ``out`` holding another configuration.
        InputError: no dataset, nothing succeeded, too many failures (as ``run_preprocess``).
        EnvError: the decoder cannot run here.
    """
    start = time.perf_counter()
    if not cfgs:
        raise ConfigError("--tau needs at least one value")
    _check_same_data(cfgs)
    cfg0 = cfgs[0]
    if not os.path.isdir(cfg0.dataset_root):
        raise InputError(f"dataset root {cfg0.dataset_root!r} is not a folder: pass the folder that holds the "
                         "videos and annotations")
    decoder_version = check_decoder(cfg0.decoder)
    dataset = load_dataset(cfg0.dataset_root, cfg0.layout, msrvtt_train=cfg0.msrvtt_train, captions=cfg0.captions,
                           splits=cfg0.splits)
    dataset, dup_failures = pre._duplicates(dataset)
    tasks, listed = pre._plan(dataset, cfg0)
    if sum(listed.values()) + len(dup_failures) == 0:
        raise InputError(f"no videos listed in {cfg0.dataset_root} for splits {', '.join(dataset.items) or 'none'}")
    for cfg in cfgs:
        pre._prepare_out(cfg, dataset)
    done: Dict[int, List[Dict[str, Any]]] = {}
    todo: List[pre.ShardTask] = []
    for t, task in enumerate(tasks):
        stats = [pre._finished_stats(task, cfg.out) for cfg in cfgs]
        if all(s is not None for s in stats):
            done[t] = stats  # type: ignore[assignment]
        else:
            todo.append(task)
    log.info("tau sweep %s: %s videos, %d shard tasks (%d already done), one decode per video",
             ", ".join(f"{c.tau:g}" for c in cfgs), ", ".join(f"{n} {s}" for s, n in listed.items()), len(tasks),
             len(done))
    new: List[List[Dict[str, Any]]] = []
    workers = min(cfg0.num_workers, len(todo))
    bar = tqdm(total=len(todo), unit="shard", disable=None, file=sys.stderr, desc="sweep preprocess")
    with logging_redirect_tqdm(), bar:
        if workers <= 1:
            for task in todo:
                new.append(run_sweep_task(task, cfgs))
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for stats in pool.map(run_sweep_task, todo, [cfgs] * len(todo)):
                    new.append(stats)
                    bar.update(1)
    ffmpeg = pre._ffmpeg_record(cfg0, decoder_version)
    results = []
    for c, cfg in enumerate(cfgs):
        all_stats = [s[c] for s in done.values()] + [s[c] for s in new]
        manifest = pre.build_manifest(cfg, dataset, listed, all_stats, ffmpeg, dup_failures)
        write_json_atomic(os.path.join(cfg.out, MANIFEST), manifest)
        results.append(pre.PreprocessResult(cfg.out, manifest, time.perf_counter() - start,
                                            processed_now=sum(len(s[c]["videos"]) for s in new),
                                            failures_now=sum(1 for s in new for v in s[c]["videos"]
                                                             if v["status"] != "ok"),
                                            reused_shards=len(done)))
    manifest = results[0].manifest
    ok = sum(s["videos"] for s in manifest["splits"].values())
    failed = len(manifest["failures"])
    if ok == 0:
        first = manifest["failures"][0]
        raise InputError(f"no video could be preprocessed ({failed} failed; first: {first['video_id']}: "
                         f"{first['error']}); every failure is listed in {os.path.join(cfg0.out, MANIFEST)}")
    if failed / (ok + failed) > cfg0.max_failure_rate:
        raise InputError(f"{failed} of {ok + failed} videos failed ({100 * failed / (ok + failed):.1f}% > "
                         f"--max-failure-rate {cfg0.max_failure_rate}); failures are listed in "
                         f"{os.path.join(cfg0.out, MANIFEST)}")
    return SweepShards(results, time.perf_counter() - start)
