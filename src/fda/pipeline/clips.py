"""One video of ``fda preprocess``: decode and sample it, compute its masks per mask setting, encode its samples.

Per video, :func:`decode_clip` checks, probes, samples and decodes it as the config says
(:meth:`fda.pipeline.video.Video.sample`), and :func:`encode_sample` computes the masks for one
:class:`~fda.config.MaskConfig` (its rule from the rule table, :data:`fda.pipeline.mask_rules.MASK_RULES` or the copy
the run was given as ``rules``) and encodes the sample. A video that cannot be used is a record (:func:`video_record`),
not an exception; one that outlives ``--video-timeout`` is ``timed out``. :func:`process_packed` is what a worker
process runs.
"""

import contextlib
import functools
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from fda.config import MaskConfig, PreprocessConfig
from fda.pipeline import executors
from fda.pipeline.datasets import VideoItem, not_regular
from fda.pipeline.mask_rules import MASK_RULES, Rules, compute_masks, mask_record, rule_of
from fda.pipeline.video import SampledFrames, Video, VideoError
from fda.shards.schema import sample_key
from fda.shards.writer import encode_frame, encode_mask, pack_sample, sample_members


def _sample_and_decode(path: str, count: int, cfg: PreprocessConfig, window_end: Optional[float] = None,
                       rules: Rules = MASK_RULES) -> SampledFrames:
    """:meth:`fda.pipeline.video.Video.sample` of ``path`` as ``cfg`` says (the one seam between a run and the
    decoder)."""
    with Video(path) as video:  # probed and decoded from one open file
        return video.sample(count, cfg.size, diff_mode=cfg.mask.diff_mode, min_decodable=cfg.min_decodable,
                            skip_damaged=cfg.skip_damaged_frames, window_end=window_end,
                            vectors=rule_of(cfg.mask, rules).vectors)  # --mask-rule mv: the same decode


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


def decode_clip(item: VideoItem, cfg: PreprocessConfig, rules: Rules = MASK_RULES) -> Clip:
    """Check, probe, sample and decode one video as ``cfg`` says (everything but the masks; ``rules``: the rule table,
    which says whether ``cfg``'s rule reads motion vectors from the decode).

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
    got = _sample_and_decode(item.path, cfg.frames_for(item.split), cfg, window_end, rules)
    info = got.info
    key = sample_key(item.video_id)
    meta = {"video_id": item.video_id, "key": key, "split": item.split, "source": item.source,
            "num_frames": int(got.total), "indices": got.indices.tolist(), "partners": got.partners.tolist(),
            "fps": round(info.fps, 6), "duration": round(info.duration, 6), "width": info.width,
            "height": info.height, "codec": info.codec, "size": cfg.size, "decoder": cfg.decoder,
            **got.meta, "num_captions": len(item.captions)}
    return Clip(key, tuple(item.captions), got.frames, got.partners_frames, meta, cfg.jpeg_quality, got.vectors)


def encode_sample(clip: Clip, mask: MaskConfig, rules: Rules = MASK_RULES) -> List[tuple]:
    """Compute the masks of ``clip`` under ``mask`` and encode the sample: its tar members, in the format's order.

    ``rules`` is the mask-rule table (:data:`fda.pipeline.mask_rules.MASK_RULES`; a copy may hold more rules)."""
    masks, fell_back, extra = compute_masks(clip.frames, clip.partners, mask, clip.vectors, rules)  # --mask-rule
    meta = {**clip.meta, "mask": {**mask_record(mask, rules), "fallback": fell_back.tolist(),
                                  "coverage": [round(float(m.mean()), 6) for m in masks], **extra}}
    return sample_members(clip.key, meta, clip.captions, clip.jpegs, [encode_mask(m) for m in masks])


def process_video_masks(item: VideoItem, cfg: PreprocessConfig, masks: Sequence[MaskConfig], rules: Rules = MASK_RULES
                        ) -> Tuple[Optional[List[List[tuple]]], Dict[str, Any]]:
    """Decode one video once, then encode its sample once per mask setting (their rules from ``rules``).

    Returns:
        ``(members per mask setting or None on failure, record)``: the record is the video's status
        ``{video_id, key, source, status, error}``. Never raises for a bad video.
    """
    record = video_record(item)
    try:
        clip = decode_clip(item, cfg, rules)
        return [encode_sample(clip, mask, rules) for mask in masks], record
    except VideoError as err:
        record.update(status="failed", error=str(err))
        return None, record


def video_record(item: VideoItem, status: str = "ok", error: Optional[str] = None) -> Dict[str, Any]:
    """A video's status record for the shard stats and the manifest."""
    return {"video_id": item.video_id, "key": sample_key(item.video_id), "source": item.source, "status": status,
            "error": error}


TEST_HOOKS = ("FDA_TEST_HANG", "FDA_TEST_CRASH")
"""Test hooks, read by the process that runs ``fda preprocess`` and handed to its workers with each video (a fork
server started earlier would not see them in its environment): on a video whose source contains the value, a worker
sleeps for an hour (a decoder that hangs, for the tests of ``--video-timeout``) or its process ends at once (a
decoder that crashes)."""


def hooks_from_env() -> Tuple[Optional[str], ...]:
    """The values of :data:`TEST_HOOKS` in this process's environment."""
    return tuple(os.environ.get(name) for name in TEST_HOOKS)


def run_test_hooks(item: VideoItem, hooks: Tuple[Optional[str], ...]) -> None:
    """Hang or crash on ``item`` as :data:`TEST_HOOKS` say."""
    hang, crash = hooks
    if hang and hang in item.source:
        time.sleep(3600)
    if crash and crash in item.source:
        os._exit(70)


class VideoTimeout(BaseException):
    """Raised in a single-process run when a video outlives ``--video-timeout`` (from ``SIGALRM``); not an
    ``Exception``, so that no ``except Exception`` on the way (the decoder counts errors that way) swallows it."""


def timed_out(item: VideoItem, cfg: PreprocessConfig) -> Dict[str, Any]:
    """The record of a video that outlived ``--video-timeout``."""
    return video_record(item, "timed out", f"timed out after {cfg.video_timeout:g} s (--video-timeout): the decoder "
                        "hung or is far slower than usual on this file")


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


def process_packed(item: VideoItem, cfg: PreprocessConfig, masks: Sequence[MaskConfig], job: Optional[int] = None,
                   hooks: Optional[Tuple[Optional[str], ...]] = None, rules: Rules = MASK_RULES
                   ) -> Tuple[Optional[List[bytes]], Dict[str, Any]]:
    """:func:`process_video_masks` with each sample packed into its tar blocks, in the process that made it (a
    worker): the process assembling the shards then only appends bytes. ``rules`` comes pickled with each video (its
    functions by reference: a rule must be importable by name, a module-level function). A pool worker first reports
    ``(job, its pid, start time)`` to the parent, which replaces a worker that outlives ``--video-timeout``; in one
    process an alarm interrupts the video instead."""
    executors.report_start(job)
    try:
        with _alarm(cfg.video_timeout if job is None else 0):
            run_test_hooks(item, hooks_from_env() if hooks is None else hooks)
            members, record = process_video_masks(item, cfg, masks, rules)
    except VideoTimeout:
        return None, timed_out(item, cfg)
    return (None if members is None else [pack_sample(m) for m in members]), record


def process_video(item: VideoItem, cfg: PreprocessConfig, rules: Rules = MASK_RULES
                  ) -> Tuple[Optional[List[tuple]], Dict[str, Any]]:
    """One video with ``cfg``'s own mask setting: ``(members or None, record)``."""
    members, record = process_video_masks(item, cfg, [cfg.mask], rules)
    return (members[0] if members is not None else None), record


def lost_record(item: VideoItem, cfg: PreprocessConfig, why: str) -> Dict[str, Any]:
    """The record of a video whose pool worker ``timed out`` (and was killed) or ``died``."""
    if why == "timed out":
        return timed_out(item, cfg)
    return video_record(item, "failed", "the worker process decoding it died (a crash in the decoder): retry it "
                        "alone, or check the file with ffmpeg")
