"""``fda preprocess``: videos -> uniformly sampled frames + frame-difference masks -> WebDataset shards.

Work is cut into shard tasks (one split, up to ``samples_per_shard`` videos, in the dataset's order). Worker
processes take videos, not shards, so one big shard uses every core; the parent writes each shard's videos in order
into ``<split>-NNNNNN.tar.partial``, renames it into place and then records the task's per-video status in
``<split>-NNNNNN.stats.json``, with the fingerprint of its inputs (each video's real path, size, mtime and captions,
and the data options) and the tar's size and sha256. A shard with stats is finished: a rerun keeps it while its
fingerprint and tar still match, and redoes it (saying why) when an input changed or the tar was damaged;
``retry_failed`` also redoes shards that recorded failed videos. Since shards are byte-deterministic, a rerun after
any interruption (kill -9 included) ends with exactly the files an uninterrupted run gives. SIGINT/SIGTERM stop the
run after the videos in progress, remove the partial shard and raise :class:`fda.errors.Interrupted`. With
``--engine ray`` whole shard tasks run on Ray.

Per video, :func:`decode_clip` checks, probes, samples and decodes it as the config says, and :func:`encode_sample`
computes the masks for one :class:`~fda.shards.schema.MaskParams` and encodes the sample. A run writes one shard set
per mask setting from one decode (:func:`preprocess_shard_sets`; a tau sweep passes several, ``fda preprocess`` one),
each exactly what a run with that setting alone writes.
"""

import collections
import contextlib
import dataclasses
import functools
import glob
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from fda import __version__
from fda.config import PreprocessConfig, flag, make_out_dir
from fda.errors import ConfigError, InputError, Interrupted
from fda.pipeline.datasets import Dataset, VideoItem, load_dataset, not_regular
from fda.pipeline.mask_rules import MASK_RULES, compute_masks, mask_record
from fda.pipeline.sampling import frames_before, needed_frames, partner_indices, sample_frame_indices
from fda.pipeline.video import Video, VideoError, VideoInfo, check_decoder, find_ffmpeg, ffmpeg_version
from fda.shards.schema import (CONFIG, MANIFEST, SCHEMA_VERSION, MaskParams, file_digest, read_json, sample_key,
                               shard_name, stats_name, write_json_atomic)
from fda.shards.location import recorded
from fda.shards.store import local_dir, publish, pull, tar_problem, unpublish
from fda.shards.writer import PARTIAL, ShardWriter, encode_frame, encode_mask, pack_sample, sample_members

log = logging.getLogger(__name__)

CLIP_CONTEXT = 77  # the text context of every CLIP model (fda's tiny test models have less: fda eval counts exactly)
TRUNCATION_NOTE = {
    "context_length": CLIP_CONTEXT,
    "counted_by": "words",
    "rule": "a split's captions_truncated counts its captions whose whitespace-separated words + 2 (start and end "
            "tokens) exceed context_length: a lower bound on what the tokenizer cuts, since CLIP's BPE gives at "
            "least one token per word; fda eval reports the exact count for the model's own tokenizer and context",
}


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


@dataclass
class PreprocessResult:
    """What a run produced (also written to ``manifest.json``)."""

    out: str
    manifest: Dict[str, Any]
    seconds: float
    processed_now: int = 0
    reused_shards: int = 0
    redone: Dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def redone_shards(self) -> int:
        """Finished shards of an earlier run that this run wrote again (changed inputs, a damaged tar, a retry)."""
        return len(self.redone)

    def summary(self) -> str:
        """One line for the terminal."""
        splits = self.manifest["splits"]
        parts = ", ".join(f"{s['videos']} {name}" for name, s in splits.items())
        shards = sum(len(s["shards"]) for s in splits.values())
        failed = len(self.manifest["failures"])
        rate = f", {self.processed_now / self.seconds:.1f} videos/s" if self.processed_now and self.seconds else ""
        reused = f", {self.reused_shards} shards already done" if self.reused_shards else ""
        redone = ""
        if self.redone:
            first, why = next(iter(self.redone.items()))
            redone = f", {self.redone_shards} redone (first: {first}: {why})"
        unlisted = len(self.manifest.get("unlisted") or ())
        unlisted = (f", {unlisted} videos under the root not in {os.path.basename(self.manifest['captions_file'])} "
                    f"(manifest 'unlisted')" if unlisted else "")
        bare = ", without captions (for fda embed/search)" if self.manifest.get("uncaptioned") else ""
        return (f"wrote {parts} videos in {shards} shards to {self.out}{bare} ({failed} failed, "
                f"listed in {os.path.join(self.out, MANIFEST)}){unlisted}{reused}{redone}{rate}")


@dataclass(frozen=True)
class ShardSets:
    """The shard sets one run writes from one decode of each video.

    Attributes:
        cfg: the run's config: what is decoded, and how (every set shares it).
        masks: one mask setting per set.
        outputs: per set, ``cfg`` with that set's ``out`` and mask setting: the config ``fda preprocess`` would run
            with to write that set alone (its ``config.json``, stats fingerprints and manifest come from it).
    """

    cfg: PreprocessConfig
    masks: Tuple[MaskParams, ...]
    outputs: Tuple[PreprocessConfig, ...]

    @classmethod
    def of(cls, cfg: PreprocessConfig, sets: Sequence[Tuple[str, MaskParams]]) -> "ShardSets":
        """Check and resolve ``(out, mask setting)`` pairs (folders made absolute: workers may run elsewhere).

        Raises:
            ConfigError: no set, two sets in one folder, or a mask setting with another ``diff_mode`` than ``cfg``.
        """
        if not sets:
            raise ConfigError("no shard set to write: pass at least one (out, mask setting)")
        for _, mask in sets:
            if mask.diff_mode != cfg.diff_mode:
                raise ConfigError(f"--diff-mode chooses the frames that are decoded, so shard sets from one decode "
                                  f"share it: {mask.diff_mode!r} differs from {cfg.diff_mode!r}")
            if MASK_RULES[mask.mask_rule].vectors and not MASK_RULES[cfg.mask_rule].vectors:
                raise ConfigError(f"--mask-rule {mask.mask_rule} reads motion vectors from the decode: run the "
                                  f"decode with it (--mask-rule {mask.mask_rule}), not {cfg.mask_rule!r}")
        outs = [recorded(out) for out, _ in sets]
        if len(set(outs)) != len(outs):
            raise ConfigError("every shard set needs its own --out folder")
        cfg = dataclasses.replace(cfg, out=outs[0])
        outputs = tuple(dataclasses.replace(cfg, out=out, **mask.fields()) for out, (_, mask) in zip(outs, sets))
        return cls(cfg, tuple(mask for _, mask in sets), outputs)


class Progress:
    """The run's progress channel: a bar over videos on stderr (off without a TTY) with the failures so far."""

    def __init__(self, total: int) -> None:
        self.bar = tqdm(total=total, unit="video", disable=None, file=sys.stderr, desc="preprocess",
                        dynamic_ncols=True)
        self.failures = 0

    def advance(self, oks: Sequence[bool]) -> None:
        """Count finished videos (``True``: written, ``False``: failed)."""
        self.failures += sum(1 for ok in oks if not ok)
        self.bar.set_postfix(failed=self.failures, refresh=False)
        self.bar.update(len(oks))

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()


# ----------------------------------------------------------------------------------------------------------------
# One video


def _ranges(values: Sequence[int]) -> List[List[int]]:
    """``[0, 1, 2, 7]`` -> ``[[0, 2], [7, 7]]`` (inclusive runs, for the json)."""
    out: List[List[int]] = []
    for v in sorted(values):
        if out and v == out[-1][1] + 1:
            out[-1][1] = v
        else:
            out.append([v, v])
    return out


def _sample_and_decode(path: str, count: int, cfg: PreprocessConfig, window_end: Optional[float] = None):
    """Probe, sample, decode; a damaged clip is resampled over the frames that decoded, or fails below
    ``cfg.min_decodable``. With ``window_end``, samples and their partners are only frames presented before
    ``window_end`` seconds (from the first frame). Returns ``(info, total, indices, partners, frames, decode_meta)``;
    plus ``vectors`` (the sampled frames' motion vectors when ``cfg.mask_rule`` reads them, else ``None``);
    ``decode_meta["window"]`` (only with ``window_end``) records the window and how many frames it held.

    Frames are numbered by presentation time: frames lost in a hole of the timestamps keep their numbers (no frame
    after the hole moves), so a stored index names the frame an undamaged decode calls by that number. Damage is
    charged where it lands: frames lost (holes, decode errors, corrupt frames), frames missing at the end, and frames
    decoded from a damaged reference (tainted) all count against ``cfg.min_decodable``; see docs/DAMAGE.md."""
    with Video(path) as video:  # probed and decoded from one open file
        info = video.info
        declared = info.expected_frames
        if info.present < cfg.min_decodable:
            held = (f"{info.num_packets} of its {info.declared_frames} frames" if info.declared_frames else
                    f"{100 * info.present:.0f}% of its {info.duration:.2f} s" if not info.tail_frames else
                    f"{info.num_packets} of its {declared} frames")
            raise VideoError(f"truncated file: it holds {held} (--min-decodable {cfg.min_decodable})"
                             + (f"; read error: {info.demux_error}" if info.demux_error else ""))
        if info.unnumbered:
            raise VideoError(f"frames cannot be numbered: {info.unnumbered}")
        total = info.num_frames
        if total < 2:
            raise VideoError("only 1 frame: a frame-difference mask needs at least 2")
        span = total if window_end is None else frames_before(info.frame_times(), window_end)  # frames [0, span)
        if window_end is not None and info.holes and span:
            span = int(info.index_of_rank()[span - 1]) + 1  # ranks -> frame numbers
        indices = sample_frame_indices(span, count)
        partners = partner_indices(indices, span, cfg.diff_mode)
        needed = needed_frames(indices, partners)
        vectors = MASK_RULES[cfg.mask_rule].vectors  # --mask-rule mv: the codec's vectors, same decode
        dec = video.decode(needed, cfg.size, full=bool(info.holes), vectors=vectors)  # holes: count every frame
        lost: List[int] = []
        tainted: List[int] = []
        frames = dec.frames
        if dec.full and (dec.good is None or len(dec.good) != total or dec.tainted
                         or any(i not in dec.frames for i in needed)):
            good = dec.good or []
            # No decode error: the codec simply makes fewer (or more) frames than there are packets (field-coded
            # video, packed frames); the clip is the frames it made. Errors or holes: the missing frames are lost.
            renumber = dec.errors == 0 and not info.holes
            tainted = dec.tainted
            clean = sorted(set(good) - set(tainted))
            if len(good) < 2 or (not renumber and len(clean) < cfg.min_decodable * declared):
                spread = f", {len(tainted)} decoded from a damaged reference" if tainted else ""
                holes = (f", {len(info.hole_frames())} missing in timestamp holes" if info.holes else "")
                raise VideoError(f"only {len(clean)} of {declared} frames decodable ({dec.errors} decode errors"
                                 f"{spread}{holes}; --min-decodable {cfg.min_decodable})")
            usable = np.asarray(clean if cfg.skip_damaged_frames and len(clean) >= 2 else good, np.int64)
            if window_end is not None:
                usable = usable[usable < span] if np.count_nonzero(usable < span) >= 2 else usable[:2]
            pick = sample_frame_indices(len(usable), count)
            pick_partners = partner_indices(pick, len(usable), cfg.diff_mode)
            indices, partners = usable[pick], usable[pick_partners]
            needed = needed_frames(indices, partners)
            if any(i not in dec.frames for i in needed):
                dec = video.decode(needed, cfg.size, full=True, vectors=vectors)
            missing = [i for i in needed if i not in dec.frames]
            if missing:
                raise VideoError(f"frames {missing[:5]} decoded once but not again (unstable decode)")
            if renumber:
                log.debug("%s: %d packets, %d frames; numbering the frames", path, total, len(good))
                frames = {int(p): dec.frames[int(usable[p])] for p in set(pick.tolist()) | set(pick_partners.tolist())}
                if dec.vectors is not None:
                    dec.vectors = {int(p): dec.vectors.get(int(usable[p])) for p in set(pick.tolist())}
                declared += len(good) - total  # a truncated tail stays counted
                indices, partners, total = pick, pick_partners, len(good)
                tainted = []
            else:
                lost = sorted(set(range(total)) - set(good))
                frames = dec.frames
    decode_meta = {"rotation": dec.rotation, "flip": dec.flip,
                   "sar": [dec.sar.numerator, dec.sar.denominator], "deinterlaced": dec.deinterlaced > 0,
                   "frames_lost": len(lost) + declared - total, "lost_at": _ranges(lost),
                   "truncated_frames": declared - total, "decode_errors": dec.errors}
    decode_meta.update(_damage_meta(info, total, declared - total, tainted, indices, partners))
    if window_end is not None:
        decode_meta["window"] = {"start": 0.0, "end": float(window_end), "frames": int(min(span, total)),
                                 "rule": "frames presented before 'end' seconds, counted from the first frame"}
    return info, total, indices, partners, frames, decode_meta, dec.vectors


def _damage_meta(info: VideoInfo, total: int, truncated: int, tainted: Sequence[int], indices: np.ndarray,
                 partners: np.ndarray) -> Dict[str, Any]:
    """The sample json's damage fields beyond the always-present ones, each only when it has something to say (a
    well-formed clip's json keeps its bytes): frames decoded from a damaged reference (``tainted_frames``,
    ``tainted_at``, and which stored frames and partners are among them), the demuxer's own report, and why
    ``num_frames``, ``fps`` and ``duration`` disagree when they do (``length_note``)."""
    meta: Dict[str, Any] = {}
    if tainted:
        bad = set(tainted)
        meta.update({"tainted_frames": len(bad), "tainted_at": _ranges(sorted(bad)),
                     "tainted": [k for k, i in enumerate(indices.tolist()) if i in bad],
                     "tainted_partners": [k for k, i in enumerate(partners.tolist()) if i in bad]})
    if info.holes:
        meta["holes"] = [[int(i), n] for i, n in zip(info.index_of_rank()[[r for r, _ in info.holes]].tolist(),
                                                      (n for _, n in info.holes))]
    if info.demux_damage:
        meta["demux_damage"] = info.demux_damage
    note = length_note(info, total, truncated)
    if note:
        meta["length_note"] = note
    return meta


def length_note(info: VideoInfo, total: int, truncated: int) -> Optional[str]:
    """Why ``num_frames / fps`` is more than a frame away from ``duration``, or ``None`` when they agree."""
    if info.fps <= 0 or info.duration <= 0:
        return None
    frame = 1.0 / info.fps
    if abs(total * frame - info.duration) <= frame * 1.01:
        return None
    if truncated and abs((total + truncated) * frame - info.duration) <= frame * 1.51:
        return (f"truncated: the video stream ends {truncated} frames before its declared duration "
                "(truncated_frames)")
    gaps = np.diff(info.frame_times())
    if len(gaps) > 1 and np.median(gaps) > 0 and gaps.max() > 1.5 * np.median(gaps) or truncated:
        return ("variable frame rate or missing frames: fps is the average rate the container declares, "
                "frames are numbered by presentation time")
    return ("the declared duration is not the video stream's: the container's duration covers a longer stream "
            "(audio) or says more than the video holds")


@dataclass
class Clip:
    """One video decoded and sampled: everything its samples share, whatever the mask setting.

    Attributes:
        key: the sample key.
        captions: every caption of the video.
        frames: uint8 [T, H, W, 3] RGB, the sampled frames.
        partners: uint8 [T, H, W, 3] RGB, the frame each is differenced with.
        meta: the sample json without its ``mask`` entry.
        jpeg_quality: the quality the frames are stored at.
        vectors: per sampled frame its motion vectors (``--mask-rule mv``), else ``None``.
    """

    key: str
    captions: Tuple[str, ...]
    frames: np.ndarray
    partners: np.ndarray
    meta: Dict[str, Any]
    jpeg_quality: int
    vectors: Optional[List[Optional[np.ndarray]]] = None

    @functools.cached_property
    def jpegs(self) -> List[bytes]:
        """The frames as the shard stores them, encoded once however many mask settings use them."""
        return [encode_frame(f, self.jpeg_quality) for f in self.frames]


def decode_clip(item: VideoItem, cfg: PreprocessConfig) -> Clip:
    """Check, probe, sample and decode one video as ``cfg`` says (everything but the masks).

    Raises:
        VideoError: the video cannot be used (missing, not a file, too damaged); the message is the
            one-line reason the manifest records.
    """
    if item.path is None:
        raise VideoError("listed video not found under the dataset root")
    kind = not_regular(item.path)
    if kind is not None:
        raise VideoError(f"{item.source} is {kind}, not a regular file: list the video file itself")
    window_end = None if cfg.full_duration else item.window_end
    info, total, indices, partners, decoded, decode_meta, vectors = _sample_and_decode(
        item.path, cfg.frames_for(item.split), cfg, window_end)
    key = sample_key(item.video_id)
    meta = {"video_id": item.video_id, "key": key, "split": item.split, "source": item.source,
            "num_frames": int(total), "indices": indices.tolist(), "partners": partners.tolist(),
            "fps": round(info.fps, 6), "duration": round(info.duration, 6), "width": info.width,
            "height": info.height, "codec": info.codec, "size": cfg.size, "decoder": cfg.decoder,
            **decode_meta, "num_captions": len(item.captions)}
    return Clip(key, tuple(item.captions), np.stack([decoded[int(i)] for i in indices]),
                np.stack([decoded[int(i)] for i in partners]), meta, cfg.jpeg_quality,
                None if vectors is None else [vectors.get(int(i)) for i in indices])


def encode_sample(clip: Clip, mask: MaskParams) -> List[tuple]:
    """Compute the masks of ``clip`` under ``mask`` and encode the sample: its tar members, in the format's order."""
    masks, fell_back, extra = compute_masks(clip.frames, clip.partners, mask, clip.vectors)  # the --mask-rule
    meta = {**clip.meta, "mask": {**mask_record(mask), "fallback": fell_back.tolist(),
                                  "coverage": [round(float(m.mean()), 6) for m in masks], **extra}}
    return sample_members(clip.key, meta, clip.captions, clip.jpegs, [encode_mask(m) for m in masks])


def process_video_masks(item: VideoItem, cfg: PreprocessConfig, masks: Sequence[MaskParams]
                        ) -> Tuple[Optional[List[List[tuple]]], Dict[str, Any]]:
    """Decode one video once, then encode its sample once per mask setting.

    Returns:
        ``(members per mask setting or None on failure, record)``: the record is the video's status
        ``{video_id, key, source, status, error}``. Never raises for a bad video.
    """
    record = _record(item)
    try:
        clip = decode_clip(item, cfg)
        return [encode_sample(clip, mask) for mask in masks], record
    except VideoError as err:
        record.update(status="failed", error=str(err))
        return None, record


def _record(item: VideoItem, status: str = "ok", error: Optional[str] = None) -> Dict[str, Any]:
    """A video's status record for the shard stats and the manifest."""
    return {"video_id": item.video_id, "key": sample_key(item.video_id), "source": item.source, "status": status,
            "error": error}


TEST_HOOKS = ("FDA_TEST_HANG", "FDA_TEST_CRASH")
"""Test hooks, read by the process that runs ``fda preprocess`` and handed to its workers with each video (a fork
server started earlier would not see them in its environment): on a video whose source contains the value, a worker
sleeps for an hour (a decoder that hangs, for the tests of ``--video-timeout``) or its process ends at once (a
decoder that crashes)."""


def _test_hooks() -> Tuple[Optional[str], ...]:
    return tuple(os.environ.get(name) for name in TEST_HOOKS)


def _run_test_hooks(item: VideoItem, hooks: Tuple[Optional[str], ...]) -> None:
    hang, crash = hooks
    if hang and hang in item.source:
        time.sleep(3600)
    if crash and crash in item.source:
        os._exit(70)


class VideoTimeout(BaseException):
    """Raised in a single-process run when a video outlives ``--video-timeout`` (from ``SIGALRM``); not an
    ``Exception``, so that no ``except Exception`` on the way (the decoder counts errors that way) swallows it."""


def _timed_out(item: VideoItem, cfg: PreprocessConfig) -> Dict[str, Any]:
    return _record(item, "timed out", f"timed out after {cfg.video_timeout:g} s (--video-timeout): the decoder hung "
                                      "or is far slower than usual on this file")


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise :class:`VideoTimeout` in this (main) thread after ``seconds`` (0, or not the main thread: no limit)."""
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def ring(signum: int, frame: Any) -> None:
        raise VideoTimeout()

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _process_packed(item: VideoItem, cfg: PreprocessConfig, masks: Sequence[MaskParams], job: Optional[int] = None,
                    hooks: Optional[Tuple[Optional[str], ...]] = None) -> Tuple[Optional[List[bytes]], Dict[str, Any]]:
    """:func:`process_video_masks` with each sample packed into its tar blocks, in the process that made it (a
    worker): the process assembling the shards then only appends bytes. A pool worker first reports ``(job, its
    pid, start time)`` to the parent, which replaces a worker that outlives ``--video-timeout``; in one process an
    alarm interrupts the video instead."""
    if job is not None and _STARTED is not None:
        _STARTED.put((job, os.getpid(), time.monotonic()))
    try:
        with _alarm(cfg.video_timeout if job is None else 0):
            _run_test_hooks(item, _test_hooks() if hooks is None else hooks)
            members, record = process_video_masks(item, cfg, masks)
    except VideoTimeout:
        return None, _timed_out(item, cfg)
    return (None if members is None else [pack_sample(m) for m in members]), record


def process_video(item: VideoItem, cfg: PreprocessConfig) -> Tuple[Optional[List[tuple]], Dict[str, Any]]:
    """One video with ``cfg``'s own mask setting: ``(members or None, record)``."""
    members, record = process_video_masks(item, cfg, [MaskParams.from_config(cfg)])
    return (members[0] if members is not None else None), record


# ----------------------------------------------------------------------------------------------------------------
# Shards, assembled in order from finished videos


_STARTED: Any = None  # in a pool worker: the queue that tells the parent which video it started, and when


def _init_worker(started: Any = None) -> None:
    """Per worker process: one OpenCV thread; Ctrl-C goes to the parent only, which ends the workers itself."""
    global _STARTED
    _STARTED = started
    cv2.setNumThreads(1)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker must not inherit the parent's handler
    if started is not None:
        started.put((READY, os.getpid(), time.monotonic()))


READY = -1
"""The job number with which a pool worker reports that it is set up (its signal handlers are its own)."""


class ShardAssembly:
    """One shard task's output, written in the task's video order whatever order the videos finish in.

    A tar goes to its final name only when complete; the stats file is written after the tar, so "stats exists"
    means "shard finished". Nothing is on disk under a final name before :meth:`finish`.
    """

    def __init__(self, task: ShardTask, sets: ShardSets) -> None:
        self.task, self.sets = task, sets
        self.writers: Optional[List[ShardWriter]] = None
        self.waiting: Dict[int, Tuple[Optional[List[bytes]], Dict[str, Any]]] = {}
        self.records: List[Dict[str, Any]] = []
        self.samples = self.captions = 0

    @property
    def complete(self) -> bool:
        """Every video of the task has been written (or recorded as failed)."""
        return len(self.records) == len(self.task.items)

    def add(self, position: int, samples: Optional[List[bytes]], record: Dict[str, Any]) -> None:
        """Take video ``position``'s result (its sample per shard set, packed by :func:`pack_sample`, or None when
        it failed); write every result that is next in order."""
        self.waiting[position] = (samples, record)
        while len(self.records) in self.waiting:
            samples, record = self.waiting.pop(len(self.records))
            if samples is not None:
                if self.writers is None:
                    self.writers = [ShardWriter(os.path.join(local_dir(c.out), self.task.name))
                                    for c in self.sets.outputs]
                for writer, blocks in zip(self.writers, samples):
                    writer.write_packed(blocks)
                self.samples += 1
                self.captions += len(self.task.items[len(self.records)].captions)
            self.records.append(record)

    def abort(self) -> None:
        """Remove the partial tars (an interrupted shard leaves nothing behind)."""
        for writer in self.writers or []:
            writer.abort()

    def finish(self) -> List[Dict[str, Any]]:
        """Commit the tars, then write and return each shard set's stats."""
        out = []
        task = self.task
        for c, cfg in enumerate(self.sets.outputs):
            tar: Optional[Dict[str, Any]] = None
            if self.writers is not None:
                self.writers[c].commit()
                tar = file_digest(self.writers[c].path)
            stats = {"schema_version": SCHEMA_VERSION, "split": task.split, "index": task.index,
                     "name": task.name if self.samples else None, "samples": self.samples,
                     "captions": self.captions, "videos": [dict(r) for r in self.records], "tar": tar,
                     "inputs": task.inputs if task.inputs is None else _with_options(task.inputs, cfg)}
            write_json_atomic(os.path.join(local_dir(cfg.out), stats_name(task.split, task.index)), stats)
            # a remote --out: the tar, then its stats (stats there = shard finished there)
            publish(cfg.out, [task.name] if tar else [], keep=False)
            publish(cfg.out, [stats_name(task.split, task.index)])
            out.append(stats)
        return out


def run_shard_task(task: ShardTask, sets: ShardSets) -> List[Dict[str, Any]]:
    """Write one shard and its stats file into each shard set in this process; returns the stats per set."""
    shard = ShardAssembly(task, sets)
    try:
        for position, item in enumerate(task.items):
            shard.add(position, *_process_packed(item, sets.cfg, sets.masks))
    except BaseException:
        shard.abort()
        raise
    return shard.finish()


class _Stop:
    """Set by SIGINT/SIGTERM: the run stops taking videos; a second signal interrupts the current video too."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.pid = os.getpid()

    def __bool__(self) -> bool:
        return self.signum is not None

    def handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.pid:
            # A worker forked while the handler was in place (the pool replacing a timed-out one) and signalled
            # before its initializer restored the default: the pool is ending it, so end as the default would.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s: stopping; finished shards are kept, the one in progress is dropped (send it again to "
                    "stop even the video being decoded)",
                    signal.Signals(signum).name)

    @contextlib.contextmanager
    def installed(self) -> Iterator["_Stop"]:
        """Catch SIGINT and SIGTERM while the block runs (main thread only; elsewhere the defaults stay)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


def _run_videos(todo: Sequence[ShardTask], sets: ShardSets, progress: Progress, stop: _Stop,
                finished: List[List[Dict[str, Any]]]) -> None:
    """Process every video of ``todo`` on ``workers`` processes (videos, not shards, are the unit of work) and
    commit each shard as soon as its videos are in; finished shards' stats go to ``finished`` as they complete."""
    jobs = [(t, position, item) for t, task in enumerate(todo) for position, item in enumerate(task.items)]
    shards: Dict[int, ShardAssembly] = {}

    def deliver(t: int, position: int, samples: Optional[List[bytes]], record: Dict[str, Any]) -> None:
        shard = shards.setdefault(t, ShardAssembly(todo[t], sets))
        shard.add(position, samples, record)
        progress.advance([record["status"] == "ok"])
        if shard.complete:
            finished.append(shards.pop(t).finish())

    workers = min(sets.cfg.num_workers, len(jobs))
    try:
        if workers <= 1:
            _init_worker_inline()
            for t, position, item in jobs:
                if stop:
                    return
                deliver(t, position, *_process_packed(item, sets.cfg, sets.masks))
            return
        import multiprocessing as mp

        # Results wait in order for their shard; bound what is in flight or waiting (a slow video at the head of a
        # shard must not let thousands of finished ones pile up in memory).
        window = 16 * workers
        context = _pool_context(mp)
        started = context.SimpleQueue()
        running: Dict[int, Tuple[int, float]] = {}  # job number -> (worker pid, start time)
        limit = sets.cfg.video_timeout
        set_up = replaced = 0  # workers that reported READY; workers killed or dead (the pool replaces each)
        hooks = _test_hooks()

        def drain() -> None:
            nonlocal set_up
            while not started.empty():
                number, pid, when = started.get()
                if number == READY:
                    set_up += 1
                else:
                    running[number] = (pid, when)

        with _opencv_pool_stopped(), context.Pool(workers, initializer=_init_worker, initargs=(started,)) as pool:
            pending: Deque[Tuple[int, int, Any, int]] = collections.deque()
            queued = iter(enumerate(jobs))
            more = True
            while True:
                waiting = sum(len(s.waiting) for s in shards.values())
                while more and not stop and len(pending) + waiting < window:
                    job = next(queued, None)
                    if job is None:
                        more = False
                        break
                    number, (t, position, item) = job
                    pending.append((t, position, pool.apply_async(_process_packed,
                                                                  (item, sets.cfg, sets.masks, number, hooks)),
                                    number))
                if stop or not pending:
                    break
                drain()
                ready = [entry for entry in pending if entry[2].ready()]
                lost = dict((entry[3], why) for entry, why in _lost(pending, running, limit, ready))
                replaced += len(lost)
                ready += [entry for entry in pending if entry[3] in lost]
                if not ready:
                    pending[0][2].wait(0.1)
                    continue
                for entry in ready:
                    pending.remove(entry)
                    running.pop(entry[3], None)
                    if entry[3] not in lost:
                        deliver(entry[0], entry[1], *entry[2].get())
                    else:  # its worker was killed, or died: the pool starts another in its place
                        item = todo[entry[0]].items[entry[1]]
                        deliver(entry[0], entry[1], None, _timed_out(item, sets.cfg) if lost[entry[3]] == "timed out"
                                else _record(item, "failed", "the worker process decoding it died (a crash in the "
                                             "decoder): retry it alone, or check the file with ffmpeg"))
            # Leaving the block terminates the workers at once. A worker the pool is still starting in place of a
            # killed one would miss that SIGTERM (Python drops signals that arrive while a child process is being
            # set up), and the pool would wait for it forever: let every replacement finish setting up first.
            deadline = time.monotonic() + 30
            while not stop and set_up < workers + replaced and time.monotonic() < deadline:
                drain()
                time.sleep(0.05)
    finally:
        for shard in shards.values():
            shard.abort()


def _lost(pending: Sequence[Tuple[int, int, Any, int]], running: Dict[int, Tuple[int, float]], limit: float,
          ready: Sequence[Tuple[int, int, Any, int]]) -> List[Tuple[Tuple[int, int, Any, int], str]]:
    """Pending jobs that will never deliver a result, with the status to record: ``died`` (their worker is gone: a
    crash in the decoder) or ``timed out`` (their worker has been on them longer than ``limit`` seconds, 0: no limit;
    it is killed). The pool starts a new worker in place of each."""
    now = time.monotonic()
    lost = []
    for entry in pending:
        if entry in ready or entry[3] not in running:
            continue
        pid, when = running[entry[3]]
        overdue = bool(limit) and now - when > limit
        if (overdue or not _alive(pid)) and not entry[2].wait(0.2):  # a result on its way: not lost
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass  # it ended meanwhile; the pool replaces it all the same
                lost.append((entry, "timed out"))
            else:
                lost.append((entry, "died"))
    return lost


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False  # gone (the pool reaps a dead worker within a tenth of a second)
    except OSError:
        return True
    return True


@contextlib.contextmanager
def _opencv_pool_stopped() -> Iterator[None]:
    """Stop OpenCV's thread pool while worker processes are forked, then restore its size.

    A child forked while the parent's pool has threads inherits a pool without them, and its own
    ``cv2.setNumThreads`` then waits for them forever (seen after the parent warped frames with OpenCV).
    """
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def _init_worker_inline() -> None:
    cv2.setNumThreads(1)


# ----------------------------------------------------------------------------------------------------------------
# The run


def _plan(dataset: Dataset, cfg: PreprocessConfig) -> Tuple[List[ShardTask], Dict[str, int]]:
    tasks: List[ShardTask] = []
    listed: Dict[str, int] = {}
    for split, items in dataset.items.items():
        if cfg.limit is not None:
            items = items[:cfg.limit]
        listed[split] = len(items)
        for start in range(0, len(items), cfg.samples_per_shard):
            chunk = tuple(items[start:start + cfg.samples_per_shard])
            inputs = {"videos": [_video_inputs(item) for item in chunk]}
            tasks.append(ShardTask(split, start // cfg.samples_per_shard, chunk, inputs))
    return tasks, listed


# ----------------------------------------------------------------------------------------------------------------
# What a shard is made from, and whether a finished one still stands


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _video_inputs(item: VideoItem) -> Dict[str, Any]:
    """One video's part of a shard fingerprint: its id, real path, size, mtime and a digest of its captions."""
    size = mtime = None
    if item.path is not None:
        try:
            st = os.stat(item.path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            pass
    return {"video_id": item.video_id, "path": item.path, "size": size, "mtime_ns": mtime,
            "captions": _digest(list(item.captions))[:16]}


def _with_options(inputs: Dict[str, Any], cfg: PreprocessConfig) -> Dict[str, Any]:
    """A shard's full fingerprint: its videos, the data options, and one digest of both."""
    full = {"options": cfg.data_fields(), "videos": inputs["videos"]}
    return {"digest": _digest(full), **full}


def _what_changed(old: Any, new: Dict[str, Any]) -> Optional[str]:
    """The first difference between a recorded fingerprint and this run's, in words; ``None`` when they agree."""
    if not isinstance(old, dict) or "digest" not in old:
        return "it records no input fingerprint (written by an older fda)"
    if old["digest"] == new["digest"]:
        return None
    before_options = old.get("options", {})
    for name in list(new["options"]) + [k for k in before_options if k not in new["options"]]:
        if before_options.get(name) != new["options"].get(name):
            return f"{flag(name)} was {before_options.get(name)!r}, now {new['options'].get(name)!r}"
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


def _why_redo(stats: Dict[str, Any], task: ShardTask, cfg: PreprocessConfig) -> Optional[str]:
    """Why a finished shard must be written again, or ``None`` when it stands."""
    inputs = task.inputs or {"videos": [_video_inputs(item) for item in task.items]}
    changed = _what_changed(stats.get("inputs"), _with_options(inputs, cfg))
    if changed:
        return f"inputs changed: {changed}"
    if cfg.retry_failed:
        failed = sum(1 for v in stats.get("videos", []) if v.get("status") != "ok")
        if failed:
            return f"retrying {failed} failed video{'s' if failed > 1 else ''} (--retry-failed)"
    if stats.get("samples", 0) == 0:
        return None
    return tar_problem(cfg.out, task.name, stats.get("tar") or {})


def _owned_files(out: str) -> List[str]:
    pats = ["*-[0-9][0-9][0-9][0-9][0-9][0-9].tar", "*-[0-9][0-9][0-9][0-9][0-9][0-9].stats.json",
            "*" + PARTIAL, "*.json.tmp*", MANIFEST, CONFIG]
    return sorted({p for pat in pats for p in glob.glob(os.path.join(glob.escape(out), pat))})


def _prepare_out(cfg: PreprocessConfig, dataset: Dataset) -> None:
    pull(cfg.out, cfg.overwrite)  # a remote --out: what it holds, mirrored into the staging folder
    out = make_out_dir(local_dir(cfg.out))
    if cfg.overwrite:
        for path in _owned_files(out):
            os.remove(path)
    config_path = os.path.join(out, CONFIG)
    wanted = {"schema_version": SCHEMA_VERSION, "data": {**cfg.data_fields(), "layout": dataset.layout}}
    if os.path.isfile(config_path):
        old = read_json(config_path)
        if old.get("schema_version") != SCHEMA_VERSION:
            raise ConfigError(f"{cfg.out} holds shards of schema version {old.get('schema_version')}; this fda writes "
                              f"{SCHEMA_VERSION}: pass --overwrite to start over or choose another --out")
        for name in list(wanted["data"]) + [k for k in old["data"] if k not in wanted["data"]]:
            value = wanted["data"].get(name)
            if old["data"].get(name) != value:
                raise ConfigError(f"{cfg.out} holds shards made with {flag(name)} {old['data'].get(name)!r}, this run "
                                  f"asks {value!r}: pass --overwrite to start over or choose another --out")
    elif any(os.path.basename(p) != CONFIG for p in _owned_files(out)):
        raise ConfigError(f"{cfg.out} holds shard files but no {CONFIG}: pass --overwrite to start over "
                          "or choose another --out")
    else:
        write_json_atomic(config_path, wanted)
        publish(cfg.out, [CONFIG])


def _finished_stats(task: ShardTask, cfg: PreprocessConfig) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """``(stats, None)`` for a task an earlier run finished and that still stands; else ``(None, why it is redone)``
    (``why`` is ``None`` for a task never finished). Cleans up what an interrupted or outdated task left."""
    out = local_dir(cfg.out)
    stats_path = os.path.join(out, stats_name(task.split, task.index))
    why: Optional[str] = None
    if os.path.isfile(stats_path):
        try:
            stats = read_json(stats_path)
            why = _why_redo(stats, task, cfg)
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


def _remove_stale(out: str, tasks: Sequence[ShardTask]) -> List[str]:
    """Delete shard and stats files of ``out`` that no planned task owns (the dataset shrank); returns their names."""
    planned = {t.name[:-len(".tar")] for t in tasks}
    stale = []
    for path in _owned_files(out):
        name = os.path.basename(path)
        if name in (MANIFEST, CONFIG) or ".json.tmp" in name:
            continue
        if name.split(".", 1)[0] not in planned:
            os.remove(path)
            stale.append(name)
    return stale


def _pool_context(mp: Any) -> Any:
    """``fork`` (fast) unless torch is loaded here: a forked child of a process whose torch/OpenMP thread pool has
    run can deadlock (seen when fda demo or a sweep preprocess after importing the trainer), so then the workers
    come from a fork server, which starts clean (and re-imports the caller's main module, about a second)."""
    methods = mp.get_all_start_methods()
    if "fork" in methods and "torch" not in sys.modules:
        return mp.get_context("fork")
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def _run_ray(todo: Sequence[ShardTask], sets: ShardSets, progress: Progress, stop: _Stop,
             finished: List[List[Dict[str, Any]]]) -> None:
    """Shard tasks on Ray (each task writes its own shard; an interrupted task leaves only a partial file)."""
    cfg = sets.cfg
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'fda[ray]' (or pip install ray)") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, num_cpus=None if cfg.ray_address else cfg.num_workers)
    try:
        remote = ray.remote(num_cpus=1)(_ray_task)
        refs = [remote.remote(task, sets) for task in todo]
        while refs and not stop:
            done, refs = ray.wait(refs, num_returns=1, timeout=0.2)
            for ref in done:
                stats = ray.get(ref)
                progress.advance([v["status"] == "ok" for v in stats[0]["videos"]])
                finished.append(stats)
        for ref in refs:
            ray.cancel(ref, force=True)
    finally:
        if started_here:
            ray.shutdown()


def _ray_task(task: ShardTask, sets: ShardSets) -> List[Dict[str, Any]]:
    _init_worker_inline()
    return run_shard_task(task, sets)


def _ffmpeg_record(cfg: PreprocessConfig, decoder_version: str) -> Dict[str, Any]:
    try:
        binary: Optional[str] = ffmpeg_version(find_ffmpeg())
    except Exception:  # noqa: BLE001 - the binary is optional: decoding is in-process
        binary = None
    import av

    libraries = {name: ".".join(str(v) for v in version) for name, version in av.library_versions.items()}
    return {"decoder": cfg.decoder, "decoder_version": decoder_version, "binary": binary, "libraries": libraries}


def build_manifest(cfg: PreprocessConfig, dataset: Dataset, listed: Dict[str, int], all_stats: List[Dict[str, Any]],
                   ffmpeg: Dict[str, Any], extra_failures: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Assemble ``manifest.json`` from every shard's stats."""
    splits: Dict[str, Any] = {}
    failures = list(extra_failures)
    for split in dataset.items:
        stats = sorted((s for s in all_stats if s["split"] == split), key=lambda s: s["index"])
        shards = [{"name": s["name"], "samples": s["samples"], "captions": s["captions"]} for s in stats if s["name"]]
        for s in stats:
            failures += [{"split": split, **{k: v[k] for k in ("video_id", "source", "error")}}
                         for v in s["videos"] if v["status"] != "ok"]
        ok = {v["video_id"] for s in stats for v in s["videos"] if v["status"] == "ok"}
        words = [len(c.split()) for item in dataset.items[split] if item.video_id in ok for c in item.captions]
        splits[split] = {"frames": cfg.frames_for(split), "size": cfg.size, "listed": listed.get(split, 0),
                         "videos": sum(s["samples"] for s in stats), "captions": sum(s["captions"] for s in stats),
                         "failed": sum(1 for f in failures if f["split"] == split), "shards": shards,
                         "captions_truncated": sum(1 for w in words if w + 2 > CLIP_CONTEXT),
                         "caption_words_max": max(words, default=0)}
    return {"schema_version": SCHEMA_VERSION, "fda_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "dataset_root": dataset.root, "layout": dataset.layout,
            "annotations": [{"path": path, **file_digest(path)} for path in dataset.annotations],
            "duplicate_captions_dropped": dataset.duplicate_captions,
            "captions_file": dataset.captions_file, "uncaptioned": not dataset.captioned,
            "unlisted": list(dataset.unlisted),
            "config": _config_record(cfg), "mask": mask_record(MaskParams.from_config(cfg)), "ffmpeg": ffmpeg,
            "caption_truncation": TRUNCATION_NOTE,
            "splits": splits, "failures": failures}


def _config_record(cfg: PreprocessConfig) -> Dict[str, Any]:
    """The manifest's ``config``: every field, but the mask-rule fields only when the rule is not ``diff`` (issue 22),
    so a default run records what it always did and a run trained on it resumes on a rerun's shards."""
    record = dataclasses.asdict(cfg)
    if cfg.mask_rule == "diff":
        del record["mask_rule"], record["flow_threshold"]
    return record


def _key_collisions(dataset: Dataset) -> Tuple[Dataset, List[Dict[str, Any]]]:
    """Drop a video whose shard key another video of its split already took (webdataset would merge the two
    samples), and, in a captioned set, a video without a caption, recording each as a failure. Repeated ids never
    get here: ``load_dataset`` keeps the first of each. (A set where no video has a caption is an uncaptioned
    library: its videos are written without captions, for ``fda embed`` and ``fda search``.)"""
    items: Dict[str, List[VideoItem]] = {}
    dropped: List[Dict[str, Any]] = []
    captioned = dataset.captioned
    where = os.path.basename(dataset.captions_file) if dataset.captions_file else "the annotations"
    for split, split_items in dataset.items.items():
        owner: Dict[str, str] = {}  # sample key -> the video id that took it
        kept = []
        for item in split_items:
            key = sample_key(item.video_id)
            error = None
            if key in owner:
                error = f"its shard key {key} is taken by video {owner[key]!r}"
            elif captioned and not item.captions and item.path is not None:
                error = (f"no caption: add one in {where} (a set where no video has a caption is indexed "
                         "uncaptioned, for fda embed/search)")
            if error is not None:
                dropped.append({"split": split, "video_id": item.video_id, "source": item.source, "error": error})
                continue
            owner[key] = item.video_id
            kept.append(item)
        items[split] = kept
    return dataclasses.replace(dataset, items=items), dropped


def run_preprocess(cfg: PreprocessConfig) -> PreprocessResult:
    """Run ``fda preprocess``: plan shard tasks, do the missing ones, write the manifest.

    Raises:
        ConfigError: bad options, or ``out`` holds shards made with another configuration.
        InputError: no dataset found, nothing succeeded, or more failures than ``max_failure_rate``.
        EnvError: the decoder cannot run here.
    """
    return preprocess_shard_sets(cfg, [(cfg.out, MaskParams.from_config(cfg))])[0]


def preprocess_shard_sets(cfg: PreprocessConfig, sets: Sequence[Tuple[str, MaskParams]]) -> List[PreprocessResult]:
    """Write one shard set per ``(out, mask setting)``, decoding every video once as ``cfg`` says.

    Each shard set is exactly what :func:`run_preprocess` writes for ``cfg`` with that ``out`` and mask setting (the
    same tars byte for byte), and resumes the same way: a shard task is redone only where some set lacks its stats.
    A tau sweep passes one set per tau: only the mask step runs once per set.

    Raises:
        ConfigError, InputError, EnvError: as :func:`run_preprocess`; also two sets in one folder, or mask
            settings that differ in ``diff_mode`` (it chooses the decoded frames).
    """
    start = time.perf_counter()
    shard_sets = ShardSets.of(cfg, sets)
    cfg = shard_sets.cfg
    if not os.path.isdir(cfg.dataset_root):
        raise InputError(f"dataset root {cfg.dataset_root!r} is not a folder: pass the folder that holds the videos "
                         "and annotations")
    decoder_version = check_decoder(cfg.decoder)
    dataset = load_dataset(cfg.dataset_root, cfg.layout, msrvtt_train=cfg.msrvtt_train, captions=cfg.captions,
                           splits=cfg.splits)
    if cfg.full_duration and dataset.layout != "didemo":
        raise ConfigError(f"--full-duration applies to the didemo layout only, and {cfg.dataset_root} is "
                          f"{dataset.layout}: drop --full-duration")
    dataset, dup_failures = _key_collisions(dataset)
    tasks, listed = _plan(dataset, cfg)
    if sum(listed.values()) + len(dup_failures) == 0:
        raise InputError(f"no videos listed in {cfg.dataset_root} for splits {', '.join(dataset.items) or 'none'}")
    for c in shard_sets.outputs:
        _prepare_out(c, dataset)
        stale = _remove_stale(local_dir(c.out), tasks)
        if stale:
            log.warning("removed %d files of shards the dataset no longer fills: %s", len(stale),
                        ", ".join(stale[:6]) + (", ..." if len(stale) > 6 else ""))
    done: List[List[Dict[str, Any]]] = []
    todo: List[ShardTask] = []
    redone: Dict[str, str] = {}
    for task in tasks:
        checks = [_finished_stats(task, c) for c in shard_sets.outputs]
        if all(stats is not None for stats, _ in checks):
            done.append([stats for stats, _ in checks])  # type: ignore[misc]
        else:
            todo.append(task)
            why = next((w for _, w in checks if w), None)
            if why:
                redone[task.name] = why
    for name, why in list(redone.items())[:10]:
        log.info("%s: redoing it: %s", name, why)
    if len(redone) > 10:
        log.info("... and %d more shards redone, each listed in %s", len(redone) - 10, MANIFEST)
    log.info("%s layout: %s videos; %d shard tasks, %d already done, %d redone%s", dataset.layout,
             ", ".join(f"{n} {s}" for s, n in listed.items()), len(tasks), len(done), len(redone),
             f"; {len(shard_sets.masks)} mask settings (tau {', '.join(f'{m.tau:g}' for m in shard_sets.masks)}) "
             "from one decode"
             if len(shard_sets.masks) > 1 else "")
    new: List[List[Dict[str, Any]]] = []
    stop = _Stop()
    run = _run_ray if cfg.engine == "ray" and todo else _run_videos
    try:
        with logging_redirect_tqdm(), Progress(sum(len(t.items) for t in todo)) as progress, stop.installed():
            run(todo, shard_sets, progress, stop, new)
    except KeyboardInterrupt:  # a second Ctrl-C, or one that arrived before the handler was in place
        stop.signum = stop.signum or signal.SIGINT
    if stop:
        name = signal.Signals(stop.signum).name
        ready = len(done) + len(new)
        raise Interrupted(f"stopped by {name}: {ready} of {len(tasks)} shards are finished in {cfg.out} ({len(new)} "
                          f"this run, {sum(len(s[0]['videos']) for s in new)} videos); no partial shard is left; "
                          "rerun the same command to resume", stop.signum)
    ffmpeg = _ffmpeg_record(cfg, decoder_version)
    results = []
    for c, one in enumerate(shard_sets.outputs):
        manifest = build_manifest(one, dataset, listed, [s[c] for s in done + new], ffmpeg, dup_failures)
        manifest["last_run"] = {"reused_shards": len(done), "written_shards": len(new), "redone": redone}
        write_json_atomic(os.path.join(local_dir(one.out), MANIFEST), manifest)
        publish(one.out, [MANIFEST])  # a remote --out: last, listing only shards whose stats are there
        results.append(PreprocessResult(one.out, manifest, time.perf_counter() - start,
                                        processed_now=sum(len(s[c]["videos"]) for s in new),
                                        reused_shards=len(done), redone=dict(redone)))
    manifest = results[0].manifest
    where = os.path.join(cfg.out, MANIFEST)
    ok = sum(s["videos"] for s in manifest["splits"].values())
    failed = len(manifest["failures"])
    for failure in manifest["failures"][:20]:
        log.warning("skipped %s (%s): %s", failure["video_id"], failure["split"], failure["error"])
    if failed > 20:
        log.warning("... and %d more failures, all listed in %s", failed - 20, where)
    if ok == 0:
        first = manifest["failures"][0]
        raise InputError(f"no video could be preprocessed ({failed} failed; first: {first['video_id']}: "
                         f"{first['error']}); every failure is listed in {where}")
    if failed / (ok + failed) > cfg.max_failure_rate:
        raise InputError(f"{failed} of {ok + failed} videos failed ({100 * failed / (ok + failed):.1f}% > "
                         f"--max-failure-rate {cfg.max_failure_rate}); shards were written for the rest, failures "
                         f"are listed in {where}")
    return results
