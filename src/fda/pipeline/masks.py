"""Frame-difference "dynamic region" masks (pure functions on arrays; FDA-CLIP's mask generator).

For a frame and its partner frame (both already resized and cropped, so masks align pixel for pixel with the
stored frames):

1. grayscale absolute difference;
2. threshold: a pixel moves when its difference is strictly greater than ``tau`` grey levels;
3. morphological closing then opening with a ``kernel`` x ``kernel`` square (fills pin holes, then drops
   specks thinner than the kernel); ``kernel`` 0 skips both;
4. removal of 8-connected components smaller than ``min_area`` pixels.

Every step is monotone in its input set, so raising ``tau`` never adds mask pixels. The full-mask fallback for a frame
with no motion left (Alpha-CLIP's "whole image" input) is a separate step, :func:`apply_empty_rule`.
"""

from typing import Tuple

import cv2
import numpy as np


def to_gray(frame: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] RGB -> uint8 [H, W] luma (ITU-R BT.601, as OpenCV and ffmpeg's gray)."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def remove_small_components(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Drop 8-connected components of a {0, 1} uint8 mask with fewer than ``min_area`` pixels."""
    if min_area <= 1 or not mask.any():
        return mask
    # 16-bit labels suffice when pixels / 4 < 65535 (distinct 8-connected components are 2 px apart) and are faster.
    ltype = cv2.CV_16U if mask.size < 4 * 65535 else cv2.CV_32S
    count, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(mask, 8, ltype, cv2.CCL_SPAGHETTI)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False  # label 0 is the background
    return keep[labels].astype(np.uint8)


def motion_mask(gray: np.ndarray, partner_gray: np.ndarray, *, tau: float, kernel: int, min_area: int) -> np.ndarray:
    """The raw dynamic-region mask of one frame.

    Args:
        gray: uint8 [H, W] the sampled frame.
        partner_gray: uint8 [H, W] the frame it is differenced with.
        tau: threshold in grey levels (difference > tau moves).
        kernel: odd square kernel size for closing then opening; 0 disables.
        min_area: smallest component kept, in pixels.

    Returns:
        uint8 [H, W] in {0, 1}; all zeros when nothing moves (see :func:`apply_empty_rule`).
    """
    diff = cv2.absdiff(gray, partner_gray)
    mask = (diff > tau).astype(np.uint8)
    if kernel > 0 and mask.any():
        element = cv2.getStructuringElement(cv2.MORPH_RECT, (kernel, kernel))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, element)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, element)
    return remove_small_components(mask, min_area)


def apply_empty_rule(mask: np.ndarray, empty_mask: str) -> Tuple[np.ndarray, bool]:
    """Give a motionless frame the full mask (``empty_mask="full"``) or keep it empty (``"zero"``).

    Returns:
        ``(mask, fell_back)``: the mask to store and whether the fallback applied.
    """
    if mask.any() or empty_mask == "zero":
        return mask, False
    return np.ones_like(mask), True


def clip_masks(frames: np.ndarray, partners: np.ndarray, *, tau: float, kernel: int, min_area: int,
               empty_mask: str) -> Tuple[np.ndarray, np.ndarray]:
    """Masks of a whole clip.

    Args:
        frames: uint8 [T, H, W, 3] RGB sampled frames.
        partners: uint8 [T, H, W, 3] RGB partner frames (aligned with ``frames``).

    Returns:
        ``(masks uint8 [T, H, W] in {0, 1}, fell_back bool [T])``.
    """
    masks = np.empty(frames.shape[:3], dtype=np.uint8)
    fell_back = np.zeros(len(frames), dtype=bool)
    for t in range(len(frames)):
        raw = motion_mask(to_gray(frames[t]), to_gray(partners[t]), tau=tau, kernel=kernel, min_area=min_area)
        masks[t], fell_back[t] = apply_empty_rule(raw, empty_mask)
    return masks, fell_back
