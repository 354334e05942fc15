"""Frame index arithmetic (pure): which frames to sample and which frame each one is differenced with."""

from typing import List

import numpy as np

from fda.errors import InputError


def sample_frame_indices(num_frames: int, count: int) -> np.ndarray:
    """Uniformly sample ``count`` frame indices over a whole clip, in temporal order.

    The clip is cut into ``count`` equal segments and the centre frame of each is taken:
    ``floor((i + 0.5) * num_frames / count)``. Clips shorter than ``count`` frames repeat frames evenly (indices are
    sorted, non-decreasing), like the field's loaders repeat frames of short clips; no padding frames exist.

    Args:
        num_frames: exact number of decodable frames in the clip.
        count: frames to sample.

    Returns:
        int64 [count], sorted, each in ``[0, num_frames)``.

    Raises:
        InputError: ``num_frames`` < 1.
    """
    if num_frames < 1:
        raise InputError(f"a clip with {num_frames} frames cannot be sampled")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    idx = np.floor((np.arange(count, dtype=np.float64) + 0.5) * num_frames / count).astype(np.int64)
    return np.clip(idx, 0, num_frames - 1)


def partner_indices(indices: np.ndarray, num_frames: int, mode: str = "adjacent") -> np.ndarray:
    """The frame each sampled frame is differenced with.

    ``adjacent``: the next decoded frame, or the previous one for the clip's last frame.
    ``sampled``: the next sampled frame, or the previous sampled one for the last sample (a one-sample clip uses
    the adjacent rule).

    Args:
        indices: int64 [T] sorted sampled indices.
        num_frames: exact frame count (>= 2 for ``adjacent``).
        mode: ``adjacent`` or ``sampled``.

    Returns:
        int64 [T] partner indices.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if mode == "sampled" and len(indices) >= 2:
        partner = np.empty_like(indices)
        partner[:-1] = indices[1:]
        partner[-1] = indices[-2]
        return partner
    if mode not in ("adjacent", "sampled"):
        raise ValueError(f"unknown diff mode {mode!r}")
    if num_frames < 2:
        raise InputError("only 1 frame: a frame-difference mask needs at least 2")
    return np.where(indices + 1 < num_frames, indices + 1, indices - 1)


def needed_frames(indices: np.ndarray, partners: np.ndarray) -> List[int]:
    """Sorted unique frame numbers that must be decoded (samples and their partners)."""
    return sorted(set(int(i) for i in indices) | set(int(i) for i in partners))


def frames_before(times: np.ndarray, seconds: float) -> int:
    """How many frames are presented before ``seconds``: the length of the window ``[0, seconds)`` that sampling
    keeps to when a dataset annotated only the start of its clips (DiDeMo: 30 s).

    Args:
        times: float64 [N] presentation times in seconds from the first frame, non-decreasing.
        seconds: end of the window (exclusive).

    Returns:
        The number of frames with time ``< seconds``, at least ``min(2, N)`` (a mask needs two frames).
    """
    times = np.asarray(times, dtype=np.float64)
    inside = int(np.searchsorted(times, seconds, side="left"))
    return max(inside, min(2, len(times)))
