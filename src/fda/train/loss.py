"""Symmetric InfoNCE over in-batch similarities, with negatives gathered from every rank.

CLIP4Clip's ``CrossEn`` in both directions (text -> video and video -> text), averaged. With several processes the
features of all ranks are gathered (without gradient) and this rank's own slice is put back with its gradient, as
open_clip's ``ClipLoss(local_loss=False, gather_with_grad=False)`` does: every rank computes the same global loss,
gradients flow through local features only, and DDP's averaging yields the global gradient.
"""

import math
from typing import List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

MAX_LOGIT_SCALE = 100.0
MAX_LOG_SCALE = math.log(MAX_LOGIT_SCALE)


def gather_features(video: torch.Tensor, text: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """All ranks' features, this rank's slice keeping its gradient; batches may differ in size per rank.

    Args:
        video: ``[B, D]`` this rank's clip embeddings.
        text: ``[B, D]`` this rank's caption embeddings.

    Returns:
        ``(video [N, D], text [N, D], offset)``: ``N`` is the global batch and rows ``offset .. offset + B`` are
        this rank's.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return video, text, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([video.shape[0]], device=video.device)
    sizes_t = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes_t, size)
    sizes = [int(s.item()) for s in sizes_t]
    most = max(sizes)
    both = torch.cat([video, text], dim=1)  # [B, 2D]: one collective instead of two
    padded = F.pad(both.detach(), (0, 0, 0, most - both.shape[0]))
    parts: List[torch.Tensor] = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    parts = [p[:n] for p, n in zip(parts, sizes)]
    parts[rank] = both  # keep the gradient of the local slice
    full = torch.cat(parts, dim=0)
    d = video.shape[1]
    return full[:, :d], full[:, d:], sum(sizes[:rank])


def contrastive_loss(video: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
                     label_smoothing: float = 0.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Symmetric cross-entropy over the (gathered) batch; pair ``i`` is video ``i`` with caption ``i``.

    Args:
        video: ``[B, D]`` unit-length clip embeddings (this rank's).
        text: ``[B, D]`` unit-length caption embeddings, aligned with ``video``.
        logit_scale: the *exponentiated* scale (a scalar tensor); capped at 100 here as well.
        label_smoothing: as in ``F.cross_entropy`` (Alpha-CLIP trained with 0.1).

    Returns:
        ``(loss scalar, logits [N, N] text x video, detached)``.
    """
    all_video, all_text, _ = gather_features(video, text)
    scale = logit_scale.clamp(max=MAX_LOGIT_SCALE)
    logits = scale * all_text.float() @ all_video.float().t()  # [N texts, N videos]
    labels = torch.arange(logits.shape[0], device=logits.device)
    t2v = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    v2t = F.cross_entropy(logits.t(), labels, label_smoothing=label_smoothing)
    return (t2v + v2t) / 2, logits.detach()


def batch_recall_at_1(logits: torch.Tensor) -> float:
    """Text-to-video R@1 (percent) inside one batch: how often a caption's own clip scores highest."""
    hits = logits.argmax(dim=1) == torch.arange(logits.shape[0], device=logits.device)
    return 100.0 * float(hits.float().mean())


def clamp_logit_scale_(log_scale: Optional[torch.Tensor]) -> None:
    """Keep the learnable log scale in ``[0, ln 100]`` (CLIP's cap), in place, after an optimiser step."""
    if log_scale is not None:
        with torch.no_grad():
            log_scale.clamp_(0.0, MAX_LOG_SCALE)
