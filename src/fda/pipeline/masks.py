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

Two options make the rule survive real footage (:func:`robust_clip_masks`; both off by default, where the output is
exactly the paper's rule above):

- camera-motion compensation: the global motion between partner and frame is fitted robustly (corners tracked with
  pyramidal Lucas-Kanade, a similarity fitted with RANSAC), the partner is warped onto the frame, and only pixels
  valid in both are differenced. An implausible fit (few inliers, large scale or rotation, a jump of over a quarter
  of the frame) falls back to the plain difference, and each frame records what was estimated and applied;
- brightness normalisation: the partner's grey levels are matched to the frame's (gain and offset from their means
  and standard deviations over the valid pixels), so flicker and exposure changes do not light up the whole mask.
"""

import math
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from fda.config import CAMERA_MOTIONS


def to_gray(frame: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] RGB -> uint8 [H, W] luma (ITU-R BT.601, as OpenCV and ffmpeg's gray)."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def remove_small_components(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Drop 8-connected components of a {0, 1} uint8 mask with fewer than ``min_area`` pixels (``mask`` itself when
    none is that small)."""
    if min_area <= 1 or not mask.any():
        return mask
    # 16-bit labels suffice when pixels / 4 < 65535 (distinct 8-connected components are 2 px apart) and are faster;
    # the areas are counted from the labels (OpenCV's statistics cost twice the labelling itself).
    ltype = cv2.CV_16U if mask.size < 4 * 65535 else cv2.CV_32S
    count, labels = cv2.connectedComponents(mask, connectivity=8, ltype=ltype)
    small = np.bincount(labels.ravel(), minlength=count) < min_area
    small[0] = False  # label 0 is the background
    if not small.any():
        return mask
    return np.take((~small).view(np.uint8), labels) & mask


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
    return diff_mask(cv2.absdiff(gray, partner_gray), tau=tau, kernel=kernel, min_area=min_area)


def diff_mask(diff: np.ndarray, *, tau: float, kernel: int, min_area: int) -> np.ndarray:
    """Steps 2-4 of the rule on an absolute difference image (uint8 [H, W]): threshold, morphology, small parts."""
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


# Plausibility of a fitted camera motion between two adjacent sampled frames.
MIN_INLIER_SHARE = 0.5
MIN_INLIERS = 20  # a few objects on a plain background give fewer: no camera to estimate there
MAX_SCALE_CHANGE = 0.2  # |scale - 1|
MAX_ROTATION_DEG = 3.0  # between adjacent frames; a fit to a circle's corners can turn freely
MAX_SHIFT_SHARE = 0.25  # of the frame's short side
STILL_PX = 0.5  # a fit that moves no pixel by more than this is no camera motion
MIN_GAIN = 0.9  # the warp must cut the mean difference over the shared pixels to below this share of the plain one
FIT_SIDE = 128  # frames this large are fitted at half size
MAX_CORNERS = 120  # tracked per frame: enough for RANSAC, and tracking cost grows with the count


def estimate_global_motion(gray: np.ndarray, partner_gray: np.ndarray) -> Tuple[Optional[np.ndarray], Dict[str, Any]]:
    """Fit the camera motion that maps ``partner_gray`` onto ``gray`` (a similarity: shift, scale, rotation).

    Corners of the partner (``goodFeaturesToTrack``) are tracked into the frame with pyramidal Lucas-Kanade, and a
    similarity is fitted to the tracks with RANSAC (``estimateAffinePartial2D``; OpenCV seeds its RANSAC, so the
    result is deterministic). Moving objects are the outliers. Frames with a short side of :data:`FIT_SIDE` or more
    are fitted at half size (a quarter of the cost; the shift is scaled back), which keeps compensation within a
    third of the plain stage's time at 224 px.

    Returns:
        ``(matrix, info)``: the 2x3 float64 matrix (``None`` when there is no plausible fit) and
        ``{"dx", "dy", "scale", "angle", "inliers"}`` (rounded, for the sample's json) or ``{"reason"}``.
    """
    h, w = gray.shape
    scale = 0.5 if min(h, w) >= FIT_SIDE else 1.0
    if scale != 1.0:
        size = (int(round(w * scale)), int(round(h * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        partner_gray = cv2.resize(partner_gray, size, interpolation=cv2.INTER_AREA)
    pts = cv2.goodFeaturesToTrack(partner_gray, maxCorners=MAX_CORNERS, qualityLevel=0.005, minDistance=2, blockSize=3)
    if pts is None or len(pts) < MIN_INLIERS:
        return None, {"reason": f"too few corners to track ({0 if pts is None else len(pts)})"}
    moved, status, _ = cv2.calcOpticalFlowPyrLK(partner_gray, gray, pts, None, winSize=(15, 15), maxLevel=3)
    ok = status.ravel() == 1
    if ok.sum() < MIN_INLIERS:
        return None, {"reason": "tracks lost"}
    src, dst = pts[ok].reshape(-1, 2), moved[ok].reshape(-1, 2)
    matrix, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1.5 * scale,
                                                  maxIters=2000, confidence=0.995, refineIters=10)
    if matrix is None:
        return None, {"reason": "no fit"}
    matrix[:, 2] /= scale  # the rotation/scale part is the same at any size
    return plausible_similarity(matrix, int(inliers.sum()), len(src), MIN_INLIERS, h, w, points=int(len(src)))


def plausible_similarity(matrix: np.ndarray, inliers: int, total: int, min_inliers: int, h: int, w: int,
                         **extra: Any) -> Tuple[Optional[np.ndarray], Dict[str, Any]]:
    """A fitted camera similarity judged by the plausibility limits (enough inliers, :data:`MAX_SCALE_CHANGE`,
    :data:`MAX_ROTATION_DEG`, :data:`MAX_SHIFT_SHARE` of an ``h`` x ``w`` frame), shared by every fit of the camera.

    Returns:
        ``(matrix or None, info)``: ``{"dx", "dy", "scale", "angle", "inliers", **extra}`` rounded for the sample's
        json, with ``"reason"`` when the fit fails a limit (then the matrix is ``None``).
    """
    share = inliers / total
    scale = math.hypot(matrix[0, 0], matrix[1, 0])
    angle = math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))
    dx, dy = float(matrix[0, 2]), float(matrix[1, 2])
    info = {"dx": round(dx, 3), "dy": round(dy, 3), "scale": round(scale, 5), "angle": round(angle, 4),
            "inliers": round(share, 3), **extra}
    if inliers < min_inliers or share < MIN_INLIER_SHARE:
        return None, {**info, "reason": f"{inliers} inliers ({share:.0%})"}
    if abs(scale - 1) > MAX_SCALE_CHANGE or abs(angle) > MAX_ROTATION_DEG:
        return None, {**info, "reason": "implausible scale or rotation"}
    if math.hypot(dx, dy) > MAX_SHIFT_SHARE * min(h, w):
        return None, {**info, "reason": "implausible shift"}
    return matrix, info


def moves_pixels(matrix: np.ndarray, w: int, h: int) -> float:
    """Largest displacement, in pixels, of the frame's corners under ``matrix``."""
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64)
    return float(np.abs(corners @ matrix.T - corners[:, :2]).max())


def match_brightness(partner_gray: np.ndarray, gray: np.ndarray, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """``partner_gray`` with its mean and standard deviation matched to ``gray``'s (over ``valid`` pixels).

    The gain is clipped to [0.5, 2] so a near-uniform partner is not blown up. Returns uint8 [H, W].
    """
    p = partner_gray.astype(np.float32)
    f = gray.astype(np.float32)
    sel = valid if valid is not None else slice(None)
    p_mean, p_std = float(p[sel].mean()), float(p[sel].std())
    f_mean, f_std = float(f[sel].mean()), float(f[sel].std())
    gain = float(np.clip(f_std / p_std, 0.5, 2.0)) if p_std > 1e-3 else 1.0
    return np.clip((p - p_mean) * gain + f_mean, 0, 255).round().astype(np.uint8)


def robust_motion_mask(gray: np.ndarray, partner_gray: np.ndarray, *, tau: float, kernel: int, min_area: int,
                       camera: str = "none", normalize_brightness: bool = False) -> Tuple[np.ndarray, Dict[str, Any]]:
    """:func:`motion_mask` with optional camera-motion compensation and brightness normalisation.

    Returns:
        ``(mask uint8 [H, W] in {0, 1}, record)``; ``record`` has ``"compensated"`` (bool) and, with
        ``camera="compensate"``, ``"motion"`` (the fit, see :func:`estimate_global_motion`, or the reason it was
        not used).
    """
    record: Dict[str, Any] = {}
    valid = None
    partner = partner_gray
    if camera == "compensate":
        matrix, info = estimate_global_motion(gray, partner_gray)
        h, w = gray.shape
        applied = matrix is not None and moves_pixels(matrix, w, h) > STILL_PX
        if matrix is not None and not applied:
            info = {**info, "reason": "no camera motion"}
        if applied:
            warped = cv2.warpAffine(partner_gray, matrix, (w, h), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
            inside = cv2.warpAffine(np.ones_like(gray), matrix, (w, h), flags=cv2.INTER_NEAREST,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            valid = cv2.erode(inside, np.ones((3, 3), np.uint8)).astype(bool)  # drop the resampled border row
            # A fit to the objects rather than the scene (a plain background, a circle's corners) leaves the scene
            # misaligned: keep the warp only where it really explains the change.
            before = float(cv2.absdiff(gray, partner_gray)[valid].mean()) if valid.any() else 0.0
            after = float(cv2.absdiff(gray, warped)[valid].mean()) if valid.any() else 0.0
            info = {**info, "gain": round(after / before, 3) if before > 0 else None}
            if before <= 0 or after >= MIN_GAIN * before:
                applied, valid = False, None
                info["reason"] = "the warp does not explain the change"
            else:
                partner = warped
        record.update(compensated=applied, motion=info)
    elif camera != "none":
        raise ValueError(f"camera must be one of {CAMERA_MOTIONS}, got {camera!r}")
    else:
        record["compensated"] = False
    if normalize_brightness:
        partner = match_brightness(partner, gray, valid)
    diff = cv2.absdiff(gray, partner)
    if valid is not None:
        diff[~valid] = 0  # difference only where both frames see the scene
    return diff_mask(diff, tau=tau, kernel=kernel, min_area=min_area), record


def robust_clip_masks(frames: np.ndarray, partners: np.ndarray, *, tau: float, kernel: int, min_area: int,
                      empty_mask: str, camera: str = "none",
                      normalize_brightness: bool = False) -> Tuple[np.ndarray, np.ndarray, List[Dict[str, Any]]]:
    """:func:`clip_masks` with the robustness options; also returns one record per frame.

    With ``camera="none"`` and no normalisation the masks equal :func:`clip_masks`'s bit for bit.
    """
    masks = np.empty(frames.shape[:3], dtype=np.uint8)
    fell_back = np.zeros(len(frames), dtype=bool)
    records: List[Dict[str, Any]] = []
    for t in range(len(frames)):
        raw, record = robust_motion_mask(to_gray(frames[t]), to_gray(partners[t]), tau=tau, kernel=kernel,
                                         min_area=min_area, camera=camera, normalize_brightness=normalize_brightness)
        masks[t], fell_back[t] = apply_empty_rule(raw, empty_mask)
        records.append(record)
    return masks, fell_back, records
