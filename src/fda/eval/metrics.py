"""Text-video retrieval metrics exactly as the CLIP4Clip family computes them (pure numpy, no torch, no I/O).

Two protocols, chosen by ``text_to_video`` (``../shared/DATASETS.md`` §5 is the specification):

* **Square** (``text_to_video=None``; MSR-VTT 1k-A): ``sim[i, i]`` is the ground truth. Both directions follow
  CLIP4Clip ``compute_metrics``: sort each query's row descending and emit *every* 0-based position whose value
  equals the ground truth, so a ground truth tied with ``t - 1`` others emits ``t`` entries (the denominator grows);
  a NaN or infinite ground truth emits nothing (the query drops out); NaN competitors sort last. ``MdR`` is
  ``np.median(positions) + 1`` (the middle pair is averaged, so 1.5 is possible), ``MnR`` the mean position + 1.
  Text-to-video ranks ``sim``, video-to-text ranks ``sim.T``.
* **Several captions per video** (``text_to_video[i]`` = the video of caption ``i``; MSVD):

  - text-to-video (CLIP4Clip ``tensor_text_to_video_metrics``) ranks every caption's row over all videos, one rank
    per caption; captions whose ground truth is NaN or infinite are dropped; recalls are computed in float32 as
    torch does; ``MdR`` is the *lower* middle value (``torch.median``); ``MnR`` the mean rank. Torch breaks ties by
    an unspecified sort order; here a tie counts **against** the caption (rank = 1 + the number of other videos
    scoring at least as high), an order-free rule that can never reward collapsed features. NaN competitors count
    as higher (torch sorts NaN above everything).
  - video-to-text (``tensor_video_to_text_sim`` + ``compute_metrics``): NaN becomes -inf, each video ``k`` is scored
    against caption *group* ``i`` by ``max_j sim[caption j of i, k]``, and the ``[videos, groups]`` matrix is ranked
    with the square rule. It ranks ``num_videos`` groups, not every caption.

Dual softmax at inference (DSL, TS2-Net's variant) is a transductive re-weighting reported *beside* the plain
numbers, never instead of them: text-to-video ranks ``sim * softmax(sim, axis=0)`` (softmax over the text queries
of each video), video-to-text ranks ``sim * softmax(sim, axis=1)`` (over the video queries of each text), each with
the protocol above. It is not scale-invariant: apply it to ``logit_scale * cosine`` as CLIP4Clip-style code does.

Large collections: :func:`embedding_retrieval_metrics` takes the text and video embeddings instead of ``sim`` and
ranks block by block (never materialising ``[num_texts, num_videos]``), giving the same numbers as
:func:`retrieval_metrics` on ``scale * text @ video.T``. Every function here counts, per query, how many candidates
beat or tie the ground truth; nothing depends on the order of the videos (or of the captions).
"""

import logging
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from fda.errors import InputError

logger = logging.getLogger(__name__)

RECALL_AT = (1, 5, 10)
METRIC_KEYS = ("R@1", "R@5", "R@10", "MdR", "MnR")
DIRECTIONS = ("t2v", "v2t")
BLOCK_ROWS = 2048
BLOCK_COLS = 8192
EVAL_PREFIX = "eval/"

Metrics = Dict[str, Dict[str, float]]


def metric_name(direction: str, key: str, *, prefix: str = "", variant: str = "") -> str:
    """The flat name of one number, the only spelling used in logs, checkpoints, reports' rows and experiments.

    Args:
        direction: one of :data:`DIRECTIONS`.
        key: one of :data:`METRIC_KEYS`.
        prefix: ``""`` (a table column: ``t2v_R@1``) or :data:`EVAL_PREFIX` (a logged metric: ``eval/t2v_R@1``).
        variant: ``""``, ``"dsl_"``, ``"baseline_"`` or ``"baseline_dsl_"`` (``eval/baseline_dsl_t2v_R@1``).
    """
    return f"{prefix}{variant}{direction}_{key}"


BEST_METRIC = metric_name("t2v", "R@1", prefix=EVAL_PREFIX)
"""The validation number (higher is better) that picks a training run's best checkpoint."""


# --------------------------------------------------------------------------------------------------------------
# Input checks


def _as_sim(sim: np.ndarray) -> np.ndarray:
    sim = np.asarray(sim)
    if sim.ndim != 2 or sim.shape[0] == 0 or sim.shape[1] == 0:
        raise InputError(f"similarity matrix must be 2-D [num_texts, num_videos] and non-empty, got shape {sim.shape}")
    if not np.issubdtype(sim.dtype, np.floating):
        sim = sim.astype(np.float64)
    return sim


def _as_text_to_video(text_to_video: Optional[Sequence[int]], num_texts: int,
                      num_videos: int) -> Optional[np.ndarray]:
    """Validate ``text_to_video``; ``None`` (square protocol) needs a square problem."""
    if text_to_video is None:
        if num_texts != num_videos:
            raise InputError(f"a {num_texts} x {num_videos} similarity matrix is not square: pass text_to_video "
                             f"(the video index of every caption) for several captions per video")
        return None
    t2v = np.asarray(text_to_video)
    if t2v.shape != (num_texts,) or (t2v.size and not np.issubdtype(t2v.dtype, np.integer)):
        raise InputError(f"text_to_video must be {num_texts} integer video indices (one per caption), "
                         f"got shape {t2v.shape} dtype {t2v.dtype}")
    t2v = t2v.astype(np.int64)
    if t2v.min() < 0 or t2v.max() >= num_videos:
        raise InputError(f"text_to_video holds index {int(t2v.min() if t2v.min() < 0 else t2v.max())}, "
                         f"outside 0..{num_videos - 1} (the video columns)")
    per_video = np.bincount(t2v, minlength=num_videos)
    if (per_video == 0).any():
        missing = int(np.flatnonzero(per_video == 0)[0])
        raise InputError(f"video {missing} has no caption in text_to_video: every video needs at least one")
    return t2v


def cutoffs_to_text_to_video(cut_off_points: Sequence[int]) -> np.ndarray:
    """Turn CLIP4Clip's cumulative caption counts into ``text_to_video``.

    Args:
        cut_off_points: cumulative caption counts per video, e.g. ``[2, 3]``: video 0 owns captions 0-1, video 1
            caption 2.

    Returns:
        int64 ``[num_texts]``, e.g. ``[0, 0, 1]``.

    Raises:
        InputError: the counts are not strictly increasing from >= 1.
    """
    cuts = np.asarray(cut_off_points, dtype=np.int64)
    counts = np.diff(np.concatenate([[0], cuts]))
    if cuts.ndim != 1 or cuts.size == 0 or (counts < 1).any():
        raise InputError(f"cut_off_points must be strictly increasing cumulative counts >= 1, got {list(cuts)}")
    return np.repeat(np.arange(cuts.size, dtype=np.int64), counts)


# --------------------------------------------------------------------------------------------------------------
# From per-query counts to the five numbers


def _kth(start: np.ndarray, count: np.ndarray, k: int) -> int:
    """The ``k``-th smallest (0-based) value of the multiset ``⋃_q {start[q], ..., start[q] + count[q] - 1}``."""
    lo, hi = 0, int((start + count).max())
    while lo < hi:  # smallest v with #(values <= v) >= k + 1
        mid = (lo + hi) // 2
        if int(np.clip(mid - start + 1, 0, count).sum()) >= k + 1:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _summarise(start: np.ndarray, count: np.ndarray, *, torch_style: bool, what: str) -> Dict[str, float]:
    """R@K, MdR, MnR of the 0-based positions ``start[q] .. start[q] + count[q] - 1`` of every query ``q``.

    ``torch_style`` (one position per query): recalls in float32 and the lower median, as
    ``tensor_text_to_video_metrics``; otherwise float64 recalls and ``np.median`` as ``compute_metrics``.
    """
    keep = count > 0
    start, count = start[keep].astype(np.int64), count[keep].astype(np.int64)
    n = int(count.sum())
    if n == 0:
        raise InputError(f"{what}: every query dropped out (NaN or infinite ground-truth similarity): "
                         f"check the embeddings for NaN")
    out: Dict[str, float] = {}
    for k in RECALL_AT:
        hits = int(np.clip(k - start, 0, count).sum())
        if torch_style:
            out[f"R@{k}"] = float(np.float32(hits * 100) / np.float32(n))
        else:
            out[f"R@{k}"] = float(hits) * 100 / n
    if torch_style:
        out["MdR"] = float(_kth(start, count, (n - 1) // 2) + 1)
    else:
        out["MdR"] = (_kth(start, count, (n - 1) // 2) + _kth(start, count, n // 2)) / 2 + 1
    total = int((count * start).sum() + (count * (count - 1) // 2).sum())
    out["MnR"] = float(total) / n + 1
    return out


# --------------------------------------------------------------------------------------------------------------
# The ranking engine: counts of competitors that beat or tie each ground truth, block by block


class _Ranker:
    """Accumulates, per query, how many candidates score above / equal to its ground truth.

    Rows are captions in *grouped order* (``order``: stable sort by video) so that a block of rows holds whole
    caption groups (needed for the video-to-text group max). Blocks are passed in as float arrays that the ranker
    may overwrite.
    """

    def __init__(self, num_texts: int, num_videos: int, t2v: Optional[np.ndarray], block_rows: int) -> None:
        self.square = t2v is None
        self.num_texts, self.num_videos = num_texts, num_videos
        if t2v is None:
            self.order = np.arange(num_texts, dtype=np.int64)
            self.vid = self.order
        else:
            self.order = np.argsort(t2v, kind="stable")
            self.vid = t2v[self.order]  # video of each grouped row, non-decreasing
        self.row_bounds = self._row_bounds(max(1, block_rows))
        self.t2v_greater = np.zeros(num_texts, np.int64)  # indexed by grouped row
        self.t2v_equal = np.zeros(num_texts, np.int64)
        self.v2t_greater = np.zeros(num_videos, np.int64)
        self.v2t_equal = np.zeros(num_videos, np.int64)

    def _row_bounds(self, block_rows: int) -> List[Tuple[int, int]]:
        if self.square:
            return [(r, min(r + block_rows, self.num_texts)) for r in range(0, self.num_texts, block_rows)]
        group_starts = np.flatnonzero(np.diff(self.vid, prepend=-1))  # first grouped row of every video
        bounds, r0 = [], 0
        for s in group_starts[1:].tolist() + [self.num_texts]:
            if s - r0 >= block_rows or s == self.num_texts:
                bounds.append((r0, s))
                r0 = s
        return bounds

    def _own(self, r0: int, r1: int, c0: int, c1: int) -> Tuple[np.ndarray, np.ndarray]:
        """Block-local (row, col) of the ground-truth entries in rows r0:r1, columns c0:c1."""
        v = self.vid[r0:r1]
        rows = np.flatnonzero((v >= c0) & (v < c1))
        return rows, v[rows] - c0

    def add_t2v(self, block: np.ndarray, gt: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> None:
        """Count text-to-video competitors; ``gt``: ground truth of grouped rows r0:r1."""
        rows, cols = self._own(r0, r1, c0, c1)
        block[rows, cols] = np.nan if self.square else -np.inf  # the ground truth never competes with itself
        g = gt[:, None]
        self.t2v_greater[r0:r1] += np.count_nonzero(block > g, axis=1)
        self.t2v_equal[r0:r1] += np.count_nonzero(block == g, axis=1)
        if not self.square:  # torch sorts NaN above everything
            self.t2v_greater[r0:r1] += np.count_nonzero(np.isnan(block), axis=1)

    def add_v2t(self, block: np.ndarray, gt: np.ndarray, r0: int, r1: int, c0: int, c1: int) -> None:
        """Count video-to-text competitors; ``gt``: ground truth of the videos c0:c1."""
        rows, cols = self._own(r0, r1, c0, c1)
        if self.square:
            block[rows, cols] = np.nan
            scores = block  # [texts r0:r1, videos c0:c1]
        else:
            block[rows, cols] = -np.inf  # a video's own captions are its ground truth, not competitors
            block[np.isnan(block)] = -np.inf
            starts = np.flatnonzero(np.diff(self.vid[r0:r1], prepend=-1))
            scores = np.maximum.reduceat(block, starts, axis=0)  # [groups in r0:r1, videos c0:c1]
        g = gt[None, :]
        self.v2t_greater[c0:c1] += np.count_nonzero(scores > g, axis=0)
        self.v2t_equal[c0:c1] += np.count_nonzero(scores == g, axis=0)

    def result(self, gt_t2v: np.ndarray, gt_v2t: np.ndarray) -> Metrics:
        """Metrics from the counts; ``gt_t2v`` per grouped row, ``gt_v2t`` per video."""
        ok = np.isfinite(gt_t2v)
        if self.square:  # emit-all: positions greater .. greater + ties (the ground truth itself is one of them)
            start, count = self.t2v_greater, (self.t2v_equal + 1) * ok
        else:  # one rank per caption, ties against it
            start, count = self.t2v_greater + self.t2v_equal, ok.astype(np.int64)
        out = {"t2v": _summarise(start, count, torch_style=not self.square, what="text-to-video")}
        if not ok.all():
            logger.warning("text-to-video: %d of %d captions dropped (non-finite ground truth)", int((~ok).sum()),
                           ok.size)
        ok = np.isfinite(gt_v2t)
        out["v2t"] = _summarise(self.v2t_greater, (self.v2t_equal + 1) * ok, torch_style=False, what="video-to-text")
        if not ok.all():
            logger.warning("video-to-text: %d of %d videos dropped (non-finite ground truth)", int((~ok).sum()),
                           ok.size)
        return out


def _video_gt(ranker: _Ranker, gt_rows: np.ndarray) -> np.ndarray:
    """Video-to-text ground truth per video from the per-row ground truth (grouped order).

    Square: the diagonal. Several captions: the video's best own caption, NaN counted as -inf.
    """
    if ranker.square:
        return gt_rows
    best = np.full(ranker.num_videos, -np.inf, dtype=gt_rows.dtype)
    np.maximum.at(best, ranker.vid, np.where(np.isnan(gt_rows), -np.inf, gt_rows))
    return best


BlockFn = Callable[[int, int, int, int], Tuple[np.ndarray, np.ndarray]]


def _rank(ranker: _Ranker, block_fn: BlockFn, gt_t2v: np.ndarray, gt_v2t: np.ndarray, block_cols: int) -> Metrics:
    """Run every (row block, column block) through the ranker.

    Args:
        block_fn: ``(r0, r1, c0, c1) -> (t2v_block, v2t_block)``, each float ``[r1 - r0, c1 - c0]`` for the grouped
            rows r0:r1 and videos c0:c1, fresh arrays the ranker may overwrite (the same array twice when the two
            directions rank the same matrix: text-to-video is counted before video-to-text masks it further).
        gt_t2v: ground truth per grouped row.
        gt_v2t: ground truth per video.
        block_cols: videos per block.
    """
    for r0, r1 in ranker.row_bounds:
        for c0 in range(0, ranker.num_videos, max(1, block_cols)):
            c1 = min(c0 + block_cols, ranker.num_videos)
            t2v_block, v2t_block = block_fn(r0, r1, c0, c1)
            ranker.add_t2v(t2v_block, gt_t2v[r0:r1], r0, r1, c0, c1)
            ranker.add_v2t(v2t_block, gt_v2t[c0:c1], r0, r1, c0, c1)
    return ranker.result(gt_t2v, gt_v2t)


# --------------------------------------------------------------------------------------------------------------
# Public API: a similarity matrix


def retrieval_metrics(sim: np.ndarray, text_to_video: Optional[Sequence[int]] = None, *,
                      block_rows: int = BLOCK_ROWS, block_cols: int = BLOCK_COLS) -> Metrics:
    """Text-to-video and video-to-text retrieval metrics of a similarity matrix.

    Args:
        sim: ``[num_texts, num_videos]`` similarities (higher is better), any float dtype; compared in its dtype.
        text_to_video: ``[num_texts]`` video index of each caption (several captions per video, MSVD protocol);
            ``None`` for the square protocol (ground truth on the diagonal, MSR-VTT 1k-A).
        block_rows: rows compared at once (memory only; results do not depend on it).
        block_cols: columns compared at once.

    Returns:
        ``{"t2v": {"R@1", "R@5", "R@10", "MdR", "MnR"}, "v2t": {...}}``; recalls in percent, ranks 1-based.

    Raises:
        InputError: bad shapes or indices, a video without captions, or every query dropped out (non-finite).
    """
    sim = _as_sim(sim)
    t2v = _as_text_to_video(text_to_video, *sim.shape)
    ranker = _Ranker(sim.shape[0], sim.shape[1], t2v, block_rows)
    gt = sim[ranker.order, ranker.vid]  # ground truth of every grouped row

    def block_fn(r0: int, r1: int, c0: int, c1: int) -> Tuple[np.ndarray, np.ndarray]:
        block = sim[ranker.order[r0:r1], c0:c1]  # fancy indexing: a copy, which the ranker may overwrite
        return block, block

    return _rank(ranker, block_fn, gt, _video_gt(ranker, gt), block_cols)


def dsl_similarity(sim: np.ndarray, axis: int = 0) -> np.ndarray:
    """TS2-Net's inference dual softmax: ``sim * softmax(sim, axis)`` in float64.

    Args:
        sim: ``[num_texts, num_videos]``, already multiplied by ``logit_scale`` (the result depends on the scale).
        axis: 0 = softmax over texts for each video (used for text-to-video), 1 = over videos for each text (used
            for video-to-text).

    Returns:
        float64 ``[num_texts, num_videos]``.
    """
    s = _as_sim(sim).astype(np.float64)
    peak = np.max(s, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    lse = peak + np.log(np.sum(np.exp(s - peak), axis=axis, keepdims=True))
    return s * np.exp(s - lse)


def dsl_retrieval_metrics(sim: np.ndarray, text_to_video: Optional[Sequence[int]] = None, *,
                          block_rows: int = BLOCK_ROWS, block_cols: int = BLOCK_COLS) -> Metrics:
    """Retrieval metrics after inference dual softmax (transductive; report them beside the plain numbers).

    Text-to-video ranks ``dsl_similarity(sim, 0)``, video-to-text ranks ``dsl_similarity(sim, 1)`` (softmax over
    the queries of each direction, as TS2-Net reports), each with the protocol of :func:`retrieval_metrics`.

    Args:
        sim: ``[num_texts, num_videos]`` scaled similarities (``logit_scale * cosine``).
        text_to_video: as in :func:`retrieval_metrics`.
        block_rows: rows compared at once.
        block_cols: columns compared at once.

    Returns:
        The same structure as :func:`retrieval_metrics`.

    Raises:
        InputError: as :func:`retrieval_metrics`.
    """
    sim = _as_sim(sim)
    _as_text_to_video(text_to_video, *sim.shape)
    t2v = retrieval_metrics(dsl_similarity(sim, 0), text_to_video, block_rows=block_rows, block_cols=block_cols)
    v2t = retrieval_metrics(dsl_similarity(sim, 1), text_to_video, block_rows=block_rows, block_cols=block_cols)
    return {"t2v": t2v["t2v"], "v2t": v2t["v2t"]}


# --------------------------------------------------------------------------------------------------------------
# Public API: embeddings, ranked block by block


def _as_embeddings(text_emb: np.ndarray, video_emb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    t, v = np.asarray(text_emb), np.asarray(video_emb)
    if t.ndim != 2 or v.ndim != 2 or t.shape[1] != v.shape[1] or not len(t) or not len(v):
        raise InputError(f"embeddings must be [num_texts, D] and [num_videos, D] with the same D, non-empty; "
                         f"got {t.shape} and {v.shape}")
    dtype = np.float64 if np.float64 in (t.dtype, v.dtype) else np.float32
    return t.astype(dtype, copy=False), v.astype(dtype, copy=False)


def _logsumexp_block(block: np.ndarray, axis: int) -> np.ndarray:
    peak = np.max(block, axis=axis)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    return peak + np.log(np.sum(np.exp(block - np.expand_dims(peak, axis)), axis=axis))


def embedding_retrieval_metrics(text_emb: np.ndarray, video_emb: np.ndarray,
                                text_to_video: Optional[Sequence[int]] = None, *, scale: float = 1.0,
                                dsl: bool = False, block_rows: int = BLOCK_ROWS,
                                block_cols: int = BLOCK_COLS) -> Metrics:
    """Retrieval metrics of ``scale * text_emb @ video_emb.T`` without materialising it.

    The matrix is computed and ranked block by block (``block_rows x block_cols`` at a time), so 100,000 captions
    by 100,000 videos needs the embeddings plus a few hundred MB. Each ground-truth score is computed once per query
    (``scale * <t, v>``) and compared with every competitor, so the numbers equal :func:`retrieval_metrics` on the
    full matrix (up to float rounding of exactly tied scores). With ``dsl`` it equals :func:`dsl_retrieval_metrics`
    (one extra pass for the softmax normalisers).

    Args:
        text_emb: ``[num_texts, D]`` caption embeddings (L2-normalised for cosine similarity).
        video_emb: ``[num_videos, D]`` video embeddings.
        text_to_video: as in :func:`retrieval_metrics`.
        scale: the multiplier of the dot products (CLIP's ``logit_scale.exp()``; matters for ``dsl`` only).
        dsl: rank the dual-softmax matrices instead of the plain one.
        block_rows: caption rows per block.
        block_cols: video columns per block.

    Returns:
        The same structure as :func:`retrieval_metrics`.

    Raises:
        InputError: bad shapes or indices, or every query dropped out.
    """
    t, v = _as_embeddings(text_emb, video_emb)
    t2v = _as_text_to_video(text_to_video, len(t), len(v))
    ranker = _Ranker(len(t), len(v), t2v, block_rows)
    t = t[ranker.order]  # grouped order; a copy of the text embeddings, never the matrix
    scale_ = t.dtype.type(scale)
    gt = np.einsum("ij,ij->i", t, v[ranker.vid]) * scale_  # [num_texts] ground truth, grouped order

    def sim_block(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return (t[r0:r1] @ v[c0:c1].T) * scale_  # [r1 - r0, c1 - c0]

    if not dsl:
        def plain(r0: int, r1: int, c0: int, c1: int) -> Tuple[np.ndarray, np.ndarray]:
            block = sim_block(r0, r1, c0, c1)
            return block, block

        return _rank(ranker, plain, gt, _video_gt(ranker, gt), block_cols)

    # Pass 1: softmax normalisers over all texts (per video) and over all videos (per text), in float64.
    lse_cols = np.full(len(v), -np.inf)
    lse_rows = np.full(len(t), -np.inf)
    for r0, r1 in ranker.row_bounds:
        for c0 in range(0, len(v), block_cols):
            c1 = min(c0 + block_cols, len(v))
            block = sim_block(r0, r1, c0, c1).astype(np.float64)
            lse_cols[c0:c1] = np.logaddexp(lse_cols[c0:c1], _logsumexp_block(block, 0))
            lse_rows[r0:r1] = np.logaddexp(lse_rows[r0:r1], _logsumexp_block(block, 1))

    # Pass 2: rank sim * softmax(sim) over the queries of each direction.
    def dual(r0: int, r1: int, c0: int, c1: int) -> Tuple[np.ndarray, np.ndarray]:
        s = sim_block(r0, r1, c0, c1).astype(np.float64)
        return s * np.exp(s - lse_cols[None, c0:c1]), s * np.exp(s - lse_rows[r0:r1, None])

    g = gt.astype(np.float64)
    gt0 = g * np.exp(g - lse_cols[ranker.vid])
    gt1 = g * np.exp(g - lse_rows)
    return _rank(ranker, dual, gt0, _video_gt(ranker, gt1), block_cols)
