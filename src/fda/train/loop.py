"""The training loop: one screen, callbacks for everything around it (STYLE.md §10).

No file names, evaluation, CLI or process-group set-up here: :mod:`fda.train.run` builds the pieces and passes
``on_log`` (every step), ``on_validate`` and ``on_checkpoint`` (when due) in.
"""

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import numpy as np
import torch
from torch import nn

from fda.config import TrainConfig
from fda.errors import FdaError
from fda.train.loss import batch_recall_at_1, clamp_logit_scale_, contrastive_loss
from fda.train.optim import set_lr

logger = logging.getLogger(__name__)

Inputs = Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]  # images, alphas, tokens


class NonFiniteLossError(FdaError):
    """The loss or the gradient became NaN or infinite; the run stopped before the optimiser step (exit code 3)."""

    exit_code = 3


def _never() -> bool:
    return False


@dataclass
class LoopSpec:
    """What the loop needs besides the config, model, optimiser and data.

    Attributes:
        total_steps: stop when the step counter reaches this.
        warmup_steps: linear warmup length.
        steps_per_epoch: optimiser steps in one epoch (for epoch-end validation and the epoch counter).
        start_step: first step to run (a resumed run's saved step).
        prepare: ``prepare(batch, step, micro) -> (images, alphas, tokens)`` on the device, augmented; it owns the
            per-step randomness.
        forward: what to call for the forward pass (the DDP wrapper, or the model itself).
        autocast: ``autocast() -> context manager`` (``nullcontext`` on CPU / fp32).
        scaler: a ``torch.amp.GradScaler`` for fp16, else None.
        no_sync: ``no_sync() -> context manager`` to skip DDP's all-reduce on accumulation micro-steps.
        global_batch: pairs per optimiser step over all ranks (for samples/s).
        should_stop: ``should_stop() -> bool``, asked after every step (and its checkpoint and validation): True
            ends the loop early, at a step boundary (an interrupt); the caller saves and reports.
        val_interval: validate every this many steps; 0: ``cfg.val_every``, else at each epoch end.
    """

    total_steps: int
    warmup_steps: int
    steps_per_epoch: int
    prepare: Callable[[Dict[str, Any], int, int], Inputs]
    forward: Callable[..., Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    start_step: int = 0
    autocast: Callable[[], Any] = contextlib.nullcontext
    scaler: Optional[Any] = None
    no_sync: Callable[[], Any] = contextlib.nullcontext
    global_batch: int = 0
    should_stop: Callable[[], bool] = _never
    val_interval: int = 0


def _finite(value: torch.Tensor) -> bool:
    return bool(torch.isfinite(value).all())


def train(cfg: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterator[Dict[str, Any]],
          spec: LoopSpec, *, on_log: Optional[Callable[[int, Dict[str, float]], None]] = None,
          on_validate: Optional[Callable[[int], Optional[Dict[str, float]]]] = None,
          on_checkpoint: Optional[Callable[[int], None]] = None) -> int:
    """Run optimiser steps ``spec.start_step .. spec.total_steps - 1``.

    Args:
        cfg: the run's config (accumulation, clipping, label smoothing, intervals).
        model: the unwrapped model (parameters, logit scale).
        optimizer: from :func:`fda.train.optim.build_optimizer`.
        batches: endless iterator of loader batches, positioned at ``spec.start_step``.
        spec: see :class:`LoopSpec`.
        on_log: called after every step with ``train/*`` metrics.
        on_validate: called when validation is due, after that step's checkpoint (a failing validation cannot lose
            the step); returns metrics (or None when there is nothing to validate).
        on_checkpoint: called every ``cfg.save_every`` steps and after the last, with the step count done.

    Returns:
        The number of steps done: ``spec.total_steps``, or fewer when ``spec.should_stop`` ended the loop.

    Raises:
        NonFiniteLossError: the loss or gradient norm was NaN/inf; nothing was stepped or saved for that step.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    step = spec.start_step
    while step < spec.total_steps and not spec.should_stop():
        t_start = time.perf_counter()
        clip_lr = set_lr(optimizer, step, spec.warmup_steps, spec.total_steps)
        wait, loss_sum, recall_sum = 0.0, 0.0, 0.0
        for micro in range(cfg.accum_steps):
            t_wait = time.perf_counter()
            batch = next(batches)
            wait += time.perf_counter() - t_wait
            images, alphas, tokens = spec.prepare(batch, step, micro)
            last = micro == cfg.accum_steps - 1
            with (contextlib.nullcontext() if last else spec.no_sync()):
                with spec.autocast():
                    video, text, scale = spec.forward(images, alphas, None, tokens)
                    loss, logits = contrastive_loss(video, text, scale, cfg.label_smoothing)
                if not _finite(loss):
                    raise NonFiniteLossError(
                        f"loss is {loss.item()} at step {step + 1}: stopped, the last good checkpoint is kept; lower "
                        f"--lr/--alpha-lr, use --precision fp32, or check the shards")
                scaled = loss / cfg.accum_steps
                (spec.scaler.scale(scaled) if spec.scaler is not None else scaled).backward()
            loss_sum += float(loss.detach())
            recall_sum += batch_recall_at_1(logits)
        # clip, step, clear: the optimiser only ever sees finite gradients
        if spec.scaler is not None:
            spec.scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        if spec.scaler is None and not _finite(grad_norm):
            raise NonFiniteLossError(f"gradient norm is {grad_norm.item()} at step {step + 1}: stopped, the last good "
                                     f"checkpoint is kept; lower --lr/--alpha-lr or use --precision fp32")
        if spec.scaler is not None:
            spec.scaler.step(optimizer)
            spec.scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clamp_logit_scale_(getattr(model, "logit_scale", None))
        step += 1

        elapsed = time.perf_counter() - t_start
        metrics = {"train/loss": loss_sum / cfg.accum_steps, "train/lr": clip_lr,
                   "train/alpha_lr": _group_lr(optimizer, "alpha"),
                   "train/logit_scale": float(model.logit_scale.detach().exp()),  # type: ignore[operator]
                   "train/batch_t2v_R@1": recall_sum / cfg.accum_steps, "train/grad_norm": float(grad_norm),
                   "train/samples_per_s": spec.global_batch / elapsed if elapsed > 0 else 0.0,
                   "train/data_wait": wait / elapsed if elapsed > 0 else 0.0, "train/step_time": elapsed,
                   "train/epoch": step / spec.steps_per_epoch}
        if on_log is not None:
            on_log(step, metrics)
        # checkpoint first: whatever validation does, the step is on disk
        if on_checkpoint is not None and (step % cfg.save_every == 0 or step == spec.total_steps):
            on_checkpoint(step)
        val_due = step % (spec.val_interval or cfg.val_every or spec.steps_per_epoch) == 0
        if on_validate is not None and (val_due or step == spec.total_steps):
            on_validate(step)
    return step


def _group_lr(optimizer: torch.optim.Optimizer, name: str) -> float:
    for group in optimizer.param_groups:
        if group.get("name") == name:
            return float(group["lr"])
    return 0.0


def step_seed(seed: int, rank: int, step: int, micro: int = 0) -> int:
    """A 63-bit seed for the randomness of one micro-step on one rank (augmentation, dropout).

    Seeding every step from ``(seed, rank, step)`` makes a resumed run draw exactly what the uninterrupted run drew,
    whatever happened in between (validation, a restart).
    """
    return int(np.random.SeedSequence([seed, rank, step, micro, 0x7EA1]).generate_state(1, np.uint64)[0] >> 1)
