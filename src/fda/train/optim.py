"""AdamW parameter groups and the learning-rate schedule (a pure function of the step).

Groups: the alpha conv at its own, larger rate (Alpha-CLIP trained ``conv1_alpha`` at 1e-4 while the rest of CLIP
moved at 1e-6, ALPHA_CLIP.md §6), then CLIP weights with weight decay and CLIP gains/biases/embeddings/logit scale
without (open_clip's ``exclude`` rule). Every group carries ``base_lr``; :func:`lr_at` scales it by linear warmup then
cosine decay to zero, so a resumed run needs nothing but the step to be on schedule again.
"""

import math
from typing import Any, Dict, List, Optional

import torch
from torch import nn


LR_PRETRAINED = 1e-6
"""``--lr auto`` from pretrained CLIP weights: CLIP4Clip's rate (a larger one wrecks what CLIP learned)."""
LR_RANDOM = 1e-3
"""``--lr auto`` from random weights: the demo's rate; at 1e-6 a model from scratch learns nothing (R@1 stays flat)."""


def auto_lr(pretrained: bool) -> float:
    """The learning rate ``--lr auto`` means: :data:`LR_PRETRAINED` or :data:`LR_RANDOM`."""
    return LR_PRETRAINED if pretrained else LR_RANDOM


def _no_decay(name: str, param: nn.Parameter) -> bool:
    """open_clip's rule: no weight decay on 1-d params (norms, biases), embeddings and the logit scale."""
    return param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name \
        or "embedding" in name or name.endswith("class_embedding")


def freeze_text_tower(model: nn.Module) -> int:
    """Stop gradients into the text tower of ``model.clip`` (open_clip CLIP); returns the number of tensors frozen."""
    clip = model.clip
    frozen = 0
    for name, param in clip.named_parameters():
        if not name.startswith("visual.") and name != "logit_scale":
            param.requires_grad_(False)
            frozen += 1
    return frozen


def param_groups(model: nn.Module, *, lr: float, alpha_lr: float, weight_decay: float) -> List[Dict[str, Any]]:
    """AdamW groups for a :class:`fda.model.VideoAlphaCLIP`: alpha conv, decayed CLIP weights, the rest.

    Parameters with ``requires_grad`` False (a frozen text tower, the alpha conv of a ``--no-alpha`` run) are left
    out. Empty groups are dropped.

    Returns:
        A list of dicts with ``params``, ``lr``, ``base_lr``, ``weight_decay`` and ``name``.
    """
    alpha_ids = {id(p) for p in model.alpha_parameters()}
    alpha, decay, no_decay = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if id(param) in alpha_ids:
            alpha.append(param)
        elif _no_decay(name, param):
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"name": "alpha", "params": alpha, "lr": alpha_lr, "base_lr": alpha_lr, "weight_decay": weight_decay},
        {"name": "decay", "params": decay, "lr": lr, "base_lr": lr, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "lr": lr, "base_lr": lr, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, *, lr: float, alpha_lr: float, weight_decay: float,
                    fused: Optional[bool] = None) -> torch.optim.AdamW:
    """AdamW (betas 0.9/0.98, eps 1e-6, as CLIP and CLIP4Clip) over :func:`param_groups`."""
    groups = param_groups(model, lr=lr, alpha_lr=alpha_lr, weight_decay=weight_decay)
    return torch.optim.AdamW(groups, betas=(0.9, 0.98), eps=1e-6, fused=fused)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Multiplier of the base rate at ``step`` (0-based): linear warmup over ``warmup`` steps, then cosine to 0."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_at(step: int, base_lr: float, warmup: int, total: int) -> float:
    """The learning rate of a group with ``base_lr`` at ``step``."""
    return base_lr * lr_factor(step, warmup, total)


def set_lr(optimizer: torch.optim.Optimizer, step: int, warmup: int, total: int) -> float:
    """Put every group on schedule for ``step``; returns the CLIP rate (the first non-alpha group's)."""
    clip_lr = 0.0
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, group["base_lr"], warmup, total)
        if group.get("name") != "alpha" and not clip_lr:
            clip_lr = group["lr"]
    return clip_lr


def default_warmup(total: int) -> int:
    """10% of the run (CLIP4Clip's ``warmup_proportion``)."""
    return int(0.1 * total)
