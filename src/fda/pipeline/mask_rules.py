"""Mask rules: which estimate of the dynamic region becomes the alpha prompt (``--mask-rule``).

:data:`MASK_RULES` is the table of rules; its keys are the CLI's choices (:data:`fda.config.MASK_RULE_HELP`, with their
help; one test checks they agree). A rule is one function and one entry: ``compute(frames, partners, vectors, mask)``
returns the clip's masks, their full-mask fallback flags and the per-frame records its samples' json keep, and the entry
says what the rule records and whether it needs the codec's motion vectors from the decoder. ``fda preprocess`` takes
the table as an argument (:func:`fda.pipeline.preprocess.run_preprocess`'s ``rules``) and checks ``--mask-rule`` against
the table it uses (:func:`rule_of`).

- ``diff`` (the default, the paper's rule, :mod:`fda.pipeline.masks`): grey absolute difference with the partner
  frame above ``tau``. It sees the leading and trailing crescents of a mover, not its overlap with itself.
- ``flow``: dense optical flow (OpenCV DIS, :func:`flow_field`) from each sampled frame to its partner; a pixel moves
  when its flow, less the camera's (with ``--camera-motion compensate``: a similarity fitted robustly to the flow
  field, :func:`fit_similarity`), is longer than ``flow_threshold`` stored pixels, where the flow has evidence
  (texture or a change, :func:`flow_evidence`). It marks the mover where it is in the sampled frame, its textured
  interior included.
- ``mv``: the codec's own motion vectors of the sampled frame (FFmpeg's ``export_mvs``, read in the same decode),
  less the camera's the same way; blocks whose residual is longer than ``flow_threshold`` are painted at block size
  and cut to the same evidence as the flow.
  A frame without vectors (an intra frame, a codec that exports none) gets the ``diff`` mask, recorded per frame.

All three then apply the same closing, opening and minimum area (:func:`fda.pipeline.masks.diff_mask`) and the
empty-mask rule (:func:`fda.pipeline.masks.apply_empty_rule`).
"""

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from fda.config import MaskConfig
from fda.options import choice
from fda.pipeline.masks import (STILL_PX, apply_empty_rule, clip_masks, diff_mask, moves_pixels, plausible_similarity,
                                robust_clip_masks, robust_motion_mask, to_gray)
from fda.shards.schema import mask_json

Vectors = Optional[Sequence[Optional[np.ndarray]]]
"""Per sampled frame, float32 [N, 6] motion-vector blocks (:func:`fda.pipeline.video.stored_vectors`) or ``None``."""
Masks = Tuple[np.ndarray, np.ndarray, Dict[str, Any]]
"""``(masks uint8 [T, H, W] in {0, 1}, fell_back bool [T], per-frame records for the sample's json)``."""


@dataclass(frozen=True)
class MaskRule:
    """One ``--mask-rule``: everything the pipeline and the benchmarks need to use it.

    Attributes:
        name: the ``--mask-rule`` choice.
        compute: ``(frames uint8 [T, H, W, 3], partners uint8 [T, H, W, 3], vectors, mask) -> Masks``.
        text: the rule in one line, recorded as the sample json's ``mask.rule``.
        label: how tables and figures name it.
        colour: its matplotlib colour in figures.
        vectors: the decoder must export the codec's motion vectors (``flags2=+export_mvs``) for it.
    """

    name: str
    compute: Callable[[np.ndarray, np.ndarray, Vectors, MaskConfig], Masks]
    text: str
    label: str = ""
    colour: str = "tab:red"
    vectors: bool = False


Rules = Mapping[str, MaskRule]
"""A mask-rule table: :data:`MASK_RULES`, or a copy with more rules (a plain ``dict`` where it goes to worker
processes, which a ``MappingProxyType`` cannot: it does not pickle)."""


# ----------------------------------------------------------------------------------------------------------------
# diff: the paper's rule, exactly as it was


def diff_rule(frames: np.ndarray, partners: np.ndarray, vectors: Vectors, mask: MaskConfig) -> Masks:
    """The frame-difference masks (:func:`fda.pipeline.masks.clip_masks`, or the robust variant when an option is
    on); ``vectors`` is ignored."""
    extra: Dict[str, Any] = {}
    if mask.robust:
        masks, fell_back, per_frame = robust_clip_masks(
            frames, partners, tau=mask.tau, kernel=mask.kernel, min_area=mask.min_area,
            empty_mask=mask.empty_mask, camera=mask.camera_motion, normalize_brightness=mask.normalize_brightness)
        if mask.camera_motion != "none":
            extra = {"compensated": [r["compensated"] for r in per_frame], "camera": [r["motion"] for r in per_frame]}
    else:
        masks, fell_back = clip_masks(frames, partners, tau=mask.tau, kernel=mask.kernel, min_area=mask.min_area,
                                      empty_mask=mask.empty_mask)
    return masks, fell_back, extra


# ----------------------------------------------------------------------------------------------------------------
# The camera's motion in a vector field

MIN_VECTORS = 8  # inliers a field's fit needs (a 64 px H.264 frame has 16 macroblocks)
GRID_CELLS = 32  # a flow field is fitted on about this many points per side
FIT_TOLERANCE = 1.0  # RANSAC reprojection threshold, stored pixels


def fit_similarity(points: np.ndarray, moved: np.ndarray, h: int, w: int
                   ) -> Tuple[Optional[np.ndarray], Dict[str, Any]]:
    """Fit the camera's motion to a vector field: the similarity taking ``points`` to ``moved`` (RANSAC; movers are
    the outliers), with :func:`fda.pipeline.masks.estimate_global_motion`'s plausibility limits.

    Args:
        points: float32 [N, 2] positions in the sampled frame (x, y).
        moved: float32 [N, 2] where each is in the partner (flow) or reference picture (motion vectors).
        h, w: the frame's size.

    Returns:
        ``(matrix, info)``: the 2x3 float64 matrix when it is plausible and moves some pixel by more than
        :data:`fda.pipeline.masks.STILL_PX` (else ``None``), and ``{"dx", "dy", "scale", "angle", "inliers"}``
        rounded for the json, with ``"reason"`` when the fit is not applied.
    """
    if len(points) < MIN_VECTORS:
        return None, {"reason": f"too few vectors ({len(points)})"}
    matrix, inliers = cv2.estimateAffinePartial2D(points.astype(np.float32), moved.astype(np.float32),
                                                  method=cv2.RANSAC, ransacReprojThreshold=FIT_TOLERANCE,
                                                  maxIters=2000, confidence=0.995, refineIters=10)
    if matrix is None:
        return None, {"reason": "no fit"}
    matrix, info = plausible_similarity(matrix, int(inliers.sum()), len(points), MIN_VECTORS, h, w)
    if matrix is None:
        return None, info
    if moves_pixels(matrix, w, h) <= STILL_PX:
        return None, {**info, "reason": "no camera motion"}
    return matrix, info


def _residual(points: np.ndarray, moved: np.ndarray, matrix: Optional[np.ndarray]) -> np.ndarray:
    """float32 [N]: length of each vector less the camera's (``matrix``; ``None``: the vector itself)."""
    expected = points if matrix is None else points @ matrix[:, :2].T.astype(np.float32) + matrix[:, 2]
    return np.hypot(*(moved - expected).T).astype(np.float32)


def _camera(points: np.ndarray, moved: np.ndarray, h: int, w: int, camera: str
            ) -> Tuple[Optional[np.ndarray], Dict[str, Any]]:
    """The fit to remove (``None``: none) and the frame's camera record, as :func:`diff_rule` records it."""
    if camera == "none":
        return None, {}
    matrix, info = fit_similarity(points, moved, h, w)
    return matrix, {"compensated": matrix is not None, "camera": info}


def _finish(moving: np.ndarray, mask: MaskConfig) -> np.ndarray:
    """The shared last steps on a bool [H, W] moving set: closing, opening, minimum area (uint8 {0, 1})."""
    return diff_mask(moving.view(np.uint8), tau=0, kernel=mask.kernel, min_area=mask.min_area)


def _collect(records: List[Dict[str, Any]], key: str) -> Dict[str, Any]:
    """Per-frame records -> the json's lists: ``key`` (the rule's own) then ``compensated``/``camera`` when fitted."""
    extra: Dict[str, Any] = {key: [r["frame"] for r in records]}
    if any("camera" in r for r in records):
        extra["compensated"] = [r.get("compensated", False) for r in records]
        extra["camera"] = [r.get("camera") for r in records]
    return extra


# ----------------------------------------------------------------------------------------------------------------
# flow: dense optical flow

FLOW_PRESET = cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST
FLOW_FINEST_SCALE = 1  # DIS stops at half resolution on small frames (the preset's 2 misses a 64 px frame's movers)
FLOW_COARSE_FROM = 128  # from this short side on, at a quarter (224 px: a 56 px field, 3.6x cheaper than a half)
FLOW_TEXTURE = 4.0  # grey levels per pixel: below it (and unchanged) a pixel's flow is only its neighbours' guess


def flow_evidence(gray: np.ndarray, partner_gray: np.ndarray, matrix: Optional[np.ndarray], tau: float) -> np.ndarray:
    """bool [H, W]: where the flow says something: the frame has texture there (gradient above
    :data:`FLOW_TEXTURE`) or differs from the partner (camera-aligned by ``matrix``) by more than ``tau``; dilated by
    one pixel. On a flat region the flow is interpolated from its surroundings, so a mover's flow bleeds into a flat
    background (precision 0.28 on the still benchmark scenes without this, 0.74 with it)."""
    h, w = gray.shape
    partner = partner_gray if matrix is None else cv2.warpAffine(
        partner_gray, matrix, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    changed = cv2.absdiff(gray, partner) > tau
    # the squared length of integer gradients, saturating at 65535 (far above the threshold): the pixels of a float
    # magnitude's test, at two thirds of its cost
    gx = np.abs(cv2.Sobel(gray, cv2.CV_16S, 1, 0, ksize=3)).view(np.uint16)
    gy = np.abs(cv2.Sobel(gray, cv2.CV_16S, 0, 1, ksize=3)).view(np.uint16)
    textured = cv2.add(cv2.multiply(gx, gx), cv2.multiply(gy, gy)) > (8 * FLOW_TEXTURE) ** 2  # a unit step weighs 8
    return cv2.dilate((changed | textured).view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)


def flow_field(gray: np.ndarray, partner_gray: np.ndarray, dis: Any = None) -> np.ndarray:
    """Dense optical flow from ``gray`` to ``partner_gray`` (uint8 [H, W]): float32 [H, W, 2], ``(dx, dy)`` such that
    the content at ``(x, y)`` of the frame is at ``(x + dx, y + dy)`` in the partner. ``dis``: a reusable
    ``cv2.DISOpticalFlow`` (:func:`new_flow`)."""
    return (dis or new_flow()).calc(gray, partner_gray, None)


def new_flow(side: int = 0) -> Any:
    """The DIS optical flow instance :func:`flow_field` uses for frames of short side ``side``: the ultrafast preset,
    finest scale 1 (half resolution), or 2 from :data:`FLOW_COARSE_FROM` px."""
    dis = cv2.DISOpticalFlow_create(FLOW_PRESET)
    dis.setFinestScale(FLOW_FINEST_SCALE + (side >= FLOW_COARSE_FROM))
    return dis


def flow_mask(gray: np.ndarray, partner_gray: np.ndarray, mask: MaskConfig, dis: Any = None
              ) -> Tuple[np.ndarray, Dict[str, Any]]:
    """The ``flow`` rule's raw mask of one frame (uint8 [H, W] in {0, 1}, empty when nothing moves) and its record:
    ``frame`` (``{"max": the longest residual in px}``) and, with compensation, ``compensated`` and ``camera``."""
    h, w = gray.shape
    flow = flow_field(gray, partner_gray, dis)
    step = max(1, min(h, w) // GRID_CELLS)
    ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step].astype(np.float32)  # the fit's grid
    points = np.stack([xs, ys], axis=-1).reshape(-1, 2)
    moved = points + flow[step // 2::step, step // 2::step].reshape(-1, 2)
    matrix, record = _camera(points, moved, h, w, mask.camera_motion)
    if matrix is not None:  # the camera's own flow at every pixel: (A - I) p + t
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        a = matrix.astype(np.float32)
        flow = flow - np.dstack([(a[0, 0] - 1) * xs + a[0, 1] * ys + a[0, 2],
                                 a[1, 0] * xs + (a[1, 1] - 1) * ys + a[1, 2]])
    residual = cv2.magnitude(np.ascontiguousarray(flow[..., 0]), np.ascontiguousarray(flow[..., 1]))
    record["frame"] = {"max": round(float(residual.max()), 2)}
    moving = (residual > mask.flow_threshold) & flow_evidence(gray, partner_gray, matrix, mask.tau)
    return _finish(moving, mask), record


def flow_rule(frames: np.ndarray, partners: np.ndarray, vectors: Vectors, mask: MaskConfig) -> Masks:
    """Masks from dense optical flow (module docstring); ``vectors`` is ignored."""
    masks = np.empty(frames.shape[:3], np.uint8)
    fell_back = np.zeros(len(frames), bool)
    records = []
    dis = new_flow(min(frames.shape[1:3]))
    for t in range(len(frames)):
        raw, record = flow_mask(to_gray(frames[t]), to_gray(partners[t]), mask, dis)
        masks[t], fell_back[t] = apply_empty_rule(raw, mask.empty_mask)
        records.append(record)
    return masks, fell_back, _collect(records, "flow")


# ----------------------------------------------------------------------------------------------------------------
# mv: the codec's motion vectors


def paint_boxes(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    """bool [h, w]: the union of int64 [N, 4] boxes ``x0, y0, x1, y1`` (right/bottom exclusive, clipped to the frame),
    painted at once (+1/-1 marks at the corners, then running sums along both axes: an integral image)."""
    x0, x1 = np.clip(boxes[:, 0], 0, w), np.clip(boxes[:, 2], 0, w)
    y0, y1 = np.clip(boxes[:, 1], 0, h), np.clip(boxes[:, 3], 0, h)
    keep = (x1 > x0) & (y1 > y0)
    x0, x1, y0, y1 = x0[keep], x1[keep], y0[keep], y1[keep]
    width = w + 1
    corners = np.concatenate([y0 * width + x0, y0 * width + x1, y1 * width + x0, y1 * width + x1])
    signs = np.repeat(np.array([1, -1, -1, 1], np.float64), len(x0))
    marks = np.bincount(corners, signs, minlength=(h + 1) * width).reshape(h + 1, width).astype(np.float32)
    return cv2.integral(marks, sdepth=cv2.CV_32F)[1:h + 1, 1:w + 1] > 0.5  # running sums along both axes


def vector_mask(blocks: np.ndarray, h: int, w: int, mask: MaskConfig, evidence: Optional[np.ndarray] = None
                ) -> Tuple[np.ndarray, Dict[str, Any]]:
    """The ``mv`` rule's raw mask of one frame from its blocks (float32 [N, 6], ``x0, y0, x1, y1, mx, my`` in stored
    pixels): blocks whose vector, less the camera's, is longer than ``flow_threshold`` are painted at block size,
    then cut to ``evidence`` (bool [h, w], :func:`flow_evidence`: a codec gives a flat block any vector that predicts
    it equally well).

    Returns:
        ``(uint8 [h, w] in {0, 1}, record)``: ``frame`` is ``{"blocks", "moving"}`` (vectors read, vectors over the
        threshold); with compensation also ``compensated`` and ``camera``.
    """
    corners = blocks[:, :4]
    centres = np.stack([(corners[:, 0] + corners[:, 2]) / 2, (corners[:, 1] + corners[:, 3]) / 2], axis=1)
    moved = centres + blocks[:, 4:6]
    inside = (corners[:, 2] > 0) & (corners[:, 0] < w) & (corners[:, 3] > 0) & (corners[:, 1] < h)
    matrix, record = _camera(centres[inside], moved[inside], h, w, mask.camera_motion)
    over = (_residual(centres, moved, matrix) > mask.flow_threshold) & inside
    record["frame"] = {"blocks": int(inside.sum()), "moving": int(over.sum())}
    moving = paint_boxes(np.rint(corners[over]).astype(np.int64), h, w)
    if evidence is not None:
        moving &= evidence
    return _finish(moving, mask), record


NO_VECTORS = "no motion vectors (an intra frame, or a codec that exports none)"


def mv_rule(frames: np.ndarray, partners: np.ndarray, vectors: Vectors, mask: MaskConfig) -> Masks:
    """Masks from the codec's motion vectors (module docstring); a frame without vectors gets the ``diff`` mask
    (with the same camera and brightness options), its record ``{"fallback": "diff", "reason": ...}``."""
    masks = np.empty(frames.shape[:3], np.uint8)
    fell_back = np.zeros(len(frames), bool)
    records = []
    h, w = frames.shape[1:3]
    for t in range(len(frames)):
        blocks = vectors[t] if vectors is not None and t < len(vectors) else None
        if blocks is None or not len(blocks):
            raw, robust = robust_motion_mask(to_gray(frames[t]), to_gray(partners[t]), tau=mask.tau,
                                             kernel=mask.kernel, min_area=mask.min_area, camera=mask.camera_motion,
                                             normalize_brightness=mask.normalize_brightness)
            record: Dict[str, Any] = {"frame": {"fallback": "diff", "reason": NO_VECTORS}}
            if mask.camera_motion != "none":
                record.update(compensated=robust["compensated"], camera=robust["motion"])
        else:
            gray, partner = to_gray(frames[t]), to_gray(partners[t])
            # the vectors point at the codec's reference picture, not the partner: evidence of a change is
            # looked for without alignment
            raw, record = vector_mask(blocks, h, w, mask, flow_evidence(gray, partner, None, mask.tau))
        masks[t], fell_back[t] = apply_empty_rule(raw, mask.empty_mask)
        records.append(record)
    return masks, fell_back, _collect(records, "vectors")


# ----------------------------------------------------------------------------------------------------------------
# The table

MASK_RULES: Mapping[str, MaskRule] = MappingProxyType({
    "diff": MaskRule("diff", diff_rule, "gray |frame - partner| > tau; close then open (square kernel); drop "
                     "8-connected components < min_area", label="frame difference", colour="tab:red"),
    "flow": MaskRule("flow", flow_rule, "|DIS optical flow (ultrafast; finest scale 1, 2 from 128 px) frame -> "
                     "partner - camera similarity| > flow_threshold px "
                     "where the frame has texture (gradient > 4 grey levels/px) or |frame - partner| > tau; close then "
                     "open; drop components < min_area", label="optical flow", colour="tab:green"),
    "mv": MaskRule("mv", mv_rule, "codec motion-vector blocks with |vector - camera similarity| > flow_threshold px, "
                   "cut to texture (gradient > 4 grey levels/px) or |frame - partner| > tau (frames without vectors: "
                   "the diff rule); close then open; drop components < min_area",
                   label="codec motion vectors", colour="tab:cyan", vectors=True),
})
"""Every ``--mask-rule``, by its CLI name (frozen at import; a test or a caller passes a copy with more rules).

What a rule's samples record of its parameters comes from the :class:`MaskConfig` fields' roles, not from the entry:
every ``role="sample-unless-diff"`` field (today ``flow_threshold``) is recorded, and fingerprinted, for every rule
but ``diff``, whether the rule reads it or not (:func:`fda.shards.schema.mask_json`,
:meth:`fda.config.PreprocessConfig.data_fields`)."""


def rule_of(mask: MaskConfig, rules: Rules = MASK_RULES) -> MaskRule:
    """The entry of ``mask``'s rule in ``rules`` (the table a run uses: the shipped one, or a copy with more rules).

    Raises:
        ConfigError: ``--mask-rule must be one of diff, flow, mv, got 'x'`` (the table's keys).
    """
    choice(mask, "mask_rule", mask.mask_rule, tuple(rules))
    return rules[mask.mask_rule]


def mask_record(mask: MaskConfig, rules: Rules = MASK_RULES) -> Dict[str, Any]:
    """The json form of ``mask`` (:func:`fda.shards.schema.mask_json`), ``rule`` naming the rule's text for a rule
    other than ``diff`` (whose record, and so its bytes, stay as they always were)."""
    record = mask_json(mask)
    if mask.mask_rule != "diff":
        record["rule"] = rule_of(mask, rules).text
    return record


def compute_masks(frames: np.ndarray, partners: np.ndarray, mask: MaskConfig, vectors: Vectors = None,
                  rules: Rules = MASK_RULES) -> Masks:
    """The masks of a clip under ``mask``'s rule (the one call preprocess makes): ``rules[mask.mask_rule].compute``.

    Args:
        frames: uint8 [T, H, W, 3] RGB sampled frames.
        partners: uint8 [T, H, W, 3] RGB partner frames.
        vectors: the sampled frames' motion vectors when the rule needs them.
        rules: the rule table (tests pass a copy with a toy rule).
    """
    return rule_of(mask, rules).compute(frames, partners, vectors, mask)
