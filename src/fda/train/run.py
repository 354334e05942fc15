"""``fda train``: build model, data, optimiser; run the loop; log, validate, checkpoint, resume.

One process or many: under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) :func:`run_train` opens the process
group itself (nccl on GPU, gloo on CPU) and closes it at the end; nothing distributed happens at import.

The run folder's layout (``train_config.json``, ``metrics.jsonl``, ``tb/``, ``checkpoints/step-0000100.pt`` keeping
the last ``--keep-last``, ``checkpoints/best.pt`` by validation on a split that may select it: ``val`` or the
``--val-from-train`` videos, never test unless asked) is :class:`fda.runs.RunDir`'s, which ``fda eval`` reads too.
Checkpoints are written atomically.

Rerunning into a RUN_DIR that has checkpoints (or ``--resume``) restores model, optimiser, grad scaler, step, RNG
states and the data position; the loader and every per-step random draw depend only on (seed, step), so a resumed
CPU run reproduces the uninterrupted run's losses exactly. A resume refuses options that would make the checkpoint
mean something else (:data:`RESUME_FIXED`) and applies the others from the resumed step on, recording each change in
``train_config.json`` (``changes``).

SIGINT or SIGTERM (Ctrl-C, ``kill``, a scheduler's pre-emption) finishes the current step, writes a step checkpoint
and ends with :class:`TrainInterrupted` (exit code 130 or 143); a second signal aborts at once. The step checkpoint
is written before validation, and a failing validation is logged and switched off, so neither loses training.
"""

import contextlib
import dataclasses
import functools
import json
import logging
import os
import signal
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Protocol, Tuple

import torch

from fda import __version__
from fda.config import SAMPLE_FIELDS, ModelSource, TrainConfig
from fda.errors import ConfigError, FdaError, InputError
from fda.files import make_out_dir
from fda.model.device import resolve_device
from fda.model.source import effective_pretrained
from fda.options import fields_with, spelling
from fda.runs import RunDir, resume_source, shard_changes
from fda.shards.loader import batches_per_epoch, check_plan, plan_slots, slot_videos
from fda.shards.location import recorded
from fda.shards.manifest import SplitInfo, load_manifest, load_split, require_captions
from fda.shards.schema import write_json_atomic
from fda.train.data import data_stream
from fda.train.dist import Dist, StopSignals, agree, barrier, dist_from_env, stop_requested
from fda.train.holdout import HOLDOUT_DIR, HOLDOUT_SPLIT, SELECTED_ON, Holdout, plan_holdout, write_holdout
from fda.train.loop import LoopSpec, NonFiniteLossError, step_seed, train
from fda.train.optim import auto_lr, build_optimizer, default_warmup, freeze_text_tower

logger = logging.getLogger(__name__)


class Validate(Protocol):
    """Periodic validation, passed in by the caller (the CLI passes ``fda.eval.evaluate.validate``).

    ``validate(model, shards_dir, split, device) -> {"eval/t2v_R@1": ..., ...}``; the number named ``best_key``
    (higher is better) picks ``best.pt``.
    """

    @property
    def best_key(self) -> str:
        """The metric that picks the best checkpoint."""

    def __call__(self, model: torch.nn.Module, shards_dir: str, split: str,
                 device: torch.device) -> Dict[str, float]:
        """Metrics of ``model`` on ``split``."""


class TrainInterrupted(FdaError):
    """SIGINT/SIGTERM stopped the run at a step boundary after saving it; the exit code is 128 + the signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


@dataclass
class TrainResult:
    """What a finished run leaves behind."""

    run_dir: str
    steps: int
    checkpoint: Optional[str]
    metrics: Dict[str, float]

    def summary(self) -> str:
        """One line for the console."""
        loss = self.metrics.get("train/loss")
        tail = f", last loss {loss:.4f}" if loss is not None else ""
        return f"trained {self.steps} steps into {self.run_dir} (checkpoint {self.checkpoint}{tail})"


def amp_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype: ``auto`` is bf16 on CUDA and full precision elsewhere; None means no autocast.

    Raises:
        ConfigError: fp16 off CUDA.
    """
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"--precision fp16 needs a CUDA device, got {device}: use bf16 or fp32")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


# ---------------------------------------------------------------------------------------------------------------
# Length and state of a run.

MIN_VAL_INTERVAL = 50
"""With ``--val-every 0``, validation runs at epoch ends but no more often than every this many steps (rounded up to
whole epochs; and always at the last step). On a small set an epoch is a few steps (2 for 7 videos at batch 8), and
validating at each one made half the steps validation steps; 50 still gives a 500-step run ten points of its curve."""


def fit_batch(cfg: TrainConfig, info: SplitInfo, world_size: int) -> TrainConfig:
    """``cfg`` with ``batch_size`` lowered to the fewest distinct videos a data stream sees, when it asks more.

    A contrastive batch holds distinct videos, so one stream cannot fill a batch larger than its videos (a folder of
    7 videos and ``--batch-size 8``). The lowered size is logged, and ``train_config.json`` records it as
    ``batch_size`` (``batch_size_requested``: what was asked); a stream with fewer than 2 videos is left to
    :func:`fda.shards.loader.check_plan`'s error. Deterministic (the shard deal is seeded), so a resume gets the same.
    """
    n_slots = world_size * max(1, cfg.workers)
    per_epoch = batches_per_epoch(info, cfg.captions, cfg.batch_size, world_size)  # >= 1
    epochs = -(-(cfg.max_steps or cfg.epochs * per_epoch) // per_epoch)
    fewest = min(min(slot_videos(plan_slots(info.shards, n_slots, cfg.seed, epoch, cfg.captions), info.shards))
                 for epoch in range(min(epochs, 1000)))
    if cfg.batch_size <= fewest or fewest < 2:
        return cfg
    logger.warning("--batch-size %d is more than the %d distinct videos one data stream sees (%d videos, %d "
                   "stream(s)): training with batch size %d", cfg.batch_size, fewest, info.videos, n_slots, fewest)
    return dataclasses.replace(cfg, batch_size=fewest)


def resolve_lr(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with ``--lr auto`` (None) replaced by the rate it means for the weights the run starts from."""
    if cfg.lr is not None:
        return cfg
    from fda.model import get_model_config

    pretrained = effective_pretrained(cfg.pretrained, get_model_config(cfg.model)) is not None
    lr = auto_lr(pretrained)
    logger.debug("--lr auto: %g (%s weights)", lr, "pretrained" if pretrained else "random")
    return dataclasses.replace(cfg, lr=lr)


@dataclass(frozen=True)
class RunPlan:
    """How long a run is, from the manifest's counts (computed once, before anything is built).

    Attributes:
        accum_steps: loader batches per optimiser step.
        steps_per_epoch: optimiser steps per epoch.
        total_steps: the step the run ends at.
        warmup_steps: linear warmup length.
        val_interval: steps between validations: ``--val-every``, else whole epochs, at least
            :data:`MIN_VAL_INTERVAL` steps apart.
    """

    accum_steps: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    val_interval: int = 0

    @classmethod
    def of(cls, cfg: TrainConfig, info: SplitInfo, world_size: int) -> "RunPlan":
        """The plan of ``cfg`` on ``info`` with ``world_size`` processes."""
        steps_per_epoch = max(1, batches_per_epoch(info, cfg.captions, cfg.batch_size, world_size) // cfg.accum_steps)
        total = cfg.max_steps or cfg.epochs * steps_per_epoch
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None else default_warmup(total)
        val_interval = cfg.val_every or steps_per_epoch * -(-MIN_VAL_INTERVAL // steps_per_epoch)
        return cls(cfg.accum_steps, steps_per_epoch, total, warmup, val_interval)

    @property
    def batches_per_epoch(self) -> int:
        """Loader batches per rank per epoch: whole optimiser steps (the remainder is dropped)."""
        return self.steps_per_epoch * self.accum_steps

    @property
    def epochs(self) -> int:
        """Epochs the run touches (the last may be partial)."""
        return -(-self.total_steps // self.steps_per_epoch)

    def position(self, step: int) -> Tuple[int, int]:
        """``(epoch, loader batch within it)`` where step ``step`` starts."""
        return step // self.steps_per_epoch, (step % self.steps_per_epoch) * self.accum_steps


@dataclass
class RunState:
    """What changes as a run goes.

    Attributes:
        start: the step the run started (or resumed) at.
        step: the last step done.
        checkpoint: the last step checkpoint written, or the one resumed from.
        saved_step: the step of ``checkpoint`` (the resumed step at first).
        best: the best validation score so far (``Validate.best_key``).
        val_split: the split validated on; None when validation is off (or was switched off by a failure).
        selects: whether validation keeps ``best.pt`` (False: the curve is logged only, see :func:`_val_split`).
        val_dir: the shard set validated on (None: the training set's; ``--val-from-train``: the held-out set).
        selected_on: what ``best.pt`` records as the split that chose it.
        metrics: the last step's ``train/*`` metrics.
    """

    start: int
    step: int
    checkpoint: Optional[str]
    saved_step: int
    best: Optional[float]
    val_split: Optional[str]
    selects: bool = True
    val_dir: Optional[str] = None
    selected_on: Optional[str] = None
    metrics: Dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# Model.

def _build_model(cfg: TrainConfig, info: SplitInfo, device: torch.device,
                 resume_from: Optional[str]) -> Tuple[Any, Any, Dict]:
    """``(model, tokenizer, checkpoint or {})``; a resumed run rebuilds the model from its checkpoint.

    The shards are checked against the model's config before any weights are downloaded or read.
    """
    from fda.model import create, get_model_config, get_tokenizer

    if resume_from:
        model, ckpt = create(ModelSource(checkpoint=resume_from), device)
        check_shards_fit(info, model.model_cfg)
        return model, get_tokenizer(model.context_length), ckpt
    config = get_model_config(cfg.model)
    check_shards_fit(info, config)
    pretrained = effective_pretrained(cfg.pretrained, config)
    if cfg.pretrained and pretrained is None and cfg.pretrained.lower() != "none":
        logger.info("--model %s has no OpenAI weights: starting from random weights", cfg.model)
    model, _ = create(ModelSource(model=cfg.model, pretrained=pretrained, alpha_checkpoint=cfg.alpha_checkpoint),
                      device, use_alpha=not cfg.no_alpha)
    return model, get_tokenizer(model.context_length), {}


def _prepare_for_training(model: Any, cfg: TrainConfig) -> None:
    """Switch off what ``cfg`` freezes and put the model in training mode."""
    if cfg.no_alpha:
        model.use_alpha = False
        for p in model.alpha_parameters():
            p.requires_grad_(False)  # an unused conv would only confuse DDP and weight decay
    if cfg.freeze_text:
        freeze_text_tower(model)
    if cfg.grad_checkpointing:
        model.clip.set_grad_checkpointing(True)
    model.train()


def check_shards_fit(info: SplitInfo, model_cfg: Dict[str, Any]) -> None:
    """Refuse shards a model cannot take: frames smaller than its input, or more frames than it pools.

    Args:
        info: the split.
        model_cfg: the model's config document (``{"name", "model_cfg": {open_clip schema}, "fda": {...}}``), as
            :func:`fda.model.get_model_config` returns it and a checkpoint records it.

    Raises:
        InputError: the message names the shard value, the model value and the fix.
    """
    name = model_cfg.get("name", "?")
    size = model_cfg.get("model_cfg", {}).get("vision_cfg", {}).get("image_size")
    size = size[0] if isinstance(size, (tuple, list)) else size
    if isinstance(size, int) and info.size and info.size < size:
        raise InputError(f"shards in {info.shards_dir} are {info.size} px but {name} takes {size} px: rerun "
                         f"fda preprocess --size {size} (or larger)")
    max_frames = model_cfg.get("fda", {}).get("max_frames")
    if info.frames < 1 or (max_frames and info.frames > max_frames):
        raise InputError(f"shards in {info.shards_dir} have {info.frames} frames per clip but {name} takes "
                         f"1..{max_frames or 'any'}: rerun fda preprocess --frames-train N")


def _folder_split_hint(cfg: TrainConfig, manifest: Dict[str, Any]) -> None:
    """A folder set without the split to train on: say that rows without a split went to test, and the fix."""
    splits = manifest.get("splits", {})
    if manifest.get("layout") == "folder" and not splits.get(cfg.split):
        have = ", ".join(s for s in splits if splits[s]) or "none"
        raise InputError(f"shard set {cfg.shards_dir!r} has no {cfg.split!r} split (it has: {have}); rows of a "
                         f"captions file without a split go to test: write {cfg.split} in the split column of the "
                         f"videos to train on (val for a few, to select best.pt) and rerun fda preprocess")


def _val_split(cfg: TrainConfig, info: SplitInfo) -> Tuple[Optional[str], bool]:
    """``(split to validate on, whether it selects best.pt)``.

    ``auto`` validates on ``val`` and keeps ``best.pt`` by it; without a ``val`` split it validates on ``test`` for the
    curve only and keeps no ``best.pt``, so ``fda eval`` reads the last checkpoint and never reports a test number
    from a checkpoint chosen on test. An explicit ``--val-split test`` selects on test (to replicate papers that do);
    ``fda eval`` on test then says so.
    """
    if cfg.val_split == "none":
        return None, False
    splits = info.filled  # a tar pattern may select one split
    if cfg.val_split == "auto":
        if "val" in splits:
            return "val", True
        return ("test", False) if "test" in splits else (None, False)
    if cfg.val_split not in splits:
        raise InputError(f"--val-split {cfg.val_split}: {cfg.shards_dir} has no such split: preprocess it or pass "
                         f"--val-split none")
    return cfg.val_split, True


def _validation_split(cfg: TrainConfig, info: SplitInfo, validate: Optional[Validate]
                      ) -> Tuple[Optional[str], bool]:
    """The split to validate on and whether it selects ``best.pt`` (:func:`_val_split`); why, logged.
    (``--val-from-train`` validates on its own held-out set: the caller sets that up.)"""
    if cfg.val_from_train:
        return None, False
    val_split, selects = _val_split(cfg, info) if validate is not None else (None, False)
    if cfg.val_split == "none":
        logger.info("validation off (--val-split none)")
    elif validate is None:
        logger.info("validation off: no evaluator wired in")
    elif val_split is None:
        logger.info("validation off: %s has no val or test split", cfg.shards_dir)
    elif not selects:
        logger.info("no val split: validating on %s for the curve only, keeping no best.pt (fda eval reads the last "
                    "checkpoint); --val-split test selects on test, as some papers do", val_split)
    elif val_split == "test":
        logger.warning("--val-split test: best.pt is chosen on the test split; fda eval on test will say so")
    return val_split, selects


# ---------------------------------------------------------------------------------------------------------------
# The run.

def run_train(cfg: TrainConfig, validate: Optional[Validate] = None) -> TrainResult:
    """Train as ``cfg`` says (see the module docstring).

    Args:
        cfg: the run configuration.
        validate: optional periodic validation (the CLI passes ``fda.eval.evaluate.validate``); called on rank 0
            only, in eval mode, under ``torch.no_grad``.

    Returns:
        The run folder, steps done, last checkpoint and last metrics.

    Raises:
        InputError: no/empty split, shards the model cannot take, a stream with no readable sample.
        ConfigError: inconsistent options (batch larger than a stream's videos, fp16 on CPU, ...).
        EnvError: no device, weights that cannot be downloaded.
        NonFiniteLossError: the loss diverged; the last good checkpoint is kept.
        TrainInterrupted: SIGINT/SIGTERM; the step reached is saved (exit code 130/143).
    """
    manifest = load_manifest(cfg.shards_dir)  # read once (one GET from a URL)
    require_captions(cfg.shards_dir, cfg.split, "fda train", manifest)
    _folder_split_hint(cfg, manifest)
    if cfg.out:
        make_out_dir(cfg.out)  # a file or an unwritable place fails here, in one line, before any model is built
    dist = dist_from_env()
    device = resolve_device(cfg.device, dist.local_rank)
    info = load_split(cfg.shards_dir, cfg.split, manifest)  # fails fast, before any process group or model
    asked = cfg
    holdout = plan_holdout(info, cfg.val_from_train) if cfg.val_from_train else None
    train_info = holdout.train if holdout is not None else info
    cfg = resolve_lr(fit_batch(cfg, train_info, dist.world_size))
    plan = RunPlan.of(cfg, train_info, dist.world_size)
    for epoch in range(min(plan.epochs, 1000)):  # every epoch's shard deal must let each stream fill a batch
        check_plan(train_info, cfg.batch_size, dist.world_size, cfg.workers, cfg.seed, epoch, cfg.captions)
    pg = None
    if dist.active:
        import torch.distributed as tdist

        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        tdist.init_process_group(backend=backend)
        pg = tdist
    try:
        with StopSignals() as stop:
            return _run(cfg, dist, device, info, plan, validate, stop, asked, holdout)
    finally:
        if pg is not None and pg.is_initialized():
            pg.destroy_process_group()


def _run(cfg: TrainConfig, dist: Dist, device: torch.device, info: SplitInfo, plan: RunPlan,
         validate: Optional[Validate], stop: StopSignals, asked: TrainConfig,
         holdout: Optional[Holdout] = None) -> TrainResult:
    # the run folder (--out, else the one --resume names, else a new one) and the checkpoint to resume from
    resume_dir = None
    if cfg.resume:
        resume_dir = RunDir.of_checkpoint(cfg.resume).path if os.path.isfile(cfg.resume) else cfg.resume
    run = RunDir(agree(dist, cfg.out or resume_dir or RunDir.new(cfg.model).path))
    resume_from = resume_source(cfg.resume, run)
    if resume_from:
        logger.info("resuming from %s", resume_from)

    # model, optimiser, precision
    torch.manual_seed(cfg.seed)  # a randomly initialised model is the same for the same seed (and on every rank)
    model, tokenizer, ckpt = _build_model(cfg, info, device, resume_from)
    recorded_lr = ((ckpt or {}).get("train_cfg") or {}).get("lr") if resume_from else None
    if asked.lr is None and recorded_lr is not None and recorded_lr != cfg.lr:
        # --lr auto on resume means the rate the run was trained with, not a new default (a run started before
        # --lr auto existed, or with an explicit --lr, keeps its rate unless --lr is given again)
        logger.info("--lr auto: resuming with the run's own rate %g (not %g)", recorded_lr, cfg.lr)
        cfg = dataclasses.replace(cfg, lr=recorded_lr)
    _prepare_for_training(model, cfg)
    optimizer = build_optimizer(model, lr=cfg.lr, alpha_lr=cfg.alpha_lr, weight_decay=cfg.weight_decay)
    dtype = amp_dtype(cfg.precision, device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None

    # where a resumed run stands: step, best score, the changes and events recorded so far
    start, best, history = 0, None, {"changes": [], "events": []}
    if resume_from and ckpt:
        changed = shard_changes(RunDir.of_checkpoint(resume_from).shards_config(), info.config, SAMPLE_FIELDS)
        if changed:
            raise ConfigError(f"the shard set {info.shards_dir} was preprocessed again with other options since this "
                              f"run trained on it ({'; '.join(changed)}): train into a new --out")
        start, best, history = _resume(ckpt, RunDir.of_checkpoint(resume_from), cfg, dist, optimizer, scaler, plan,
                                       validate.best_key if validate is not None else None)
    if start >= plan.total_steps:
        logger.info("nothing to do: the run is at step %d of %d", start, plan.total_steps)

    # record the resolved config, open the logs
    val_split, selects = _validation_split(cfg, info, validate)
    val_dir, selected_on = None, val_split
    if holdout is not None:
        if dist.main:
            holdout = write_holdout(info, holdout, run.path)
        val_dir = os.path.join(run.path, HOLDOUT_DIR)
        val_split, selects, selected_on = (HOLDOUT_SPLIT, True, SELECTED_ON) if validate is not None else (None, False,
                                                                                                           None)
        logger.info("--val-from-train %d: validating on %d training videos held out in %s (they do not train), "
                    "keeping best.pt by them", cfg.val_from_train, len(holdout.keys), val_dir)
    resolved = _resolved_config(cfg, model, run, dist, device, dtype, plan, info, val_split, history)
    resolved["best_selected_on"] = selected_on if selects else None
    if holdout is not None:
        resolved["held_out"] = holdout.record()
    resolved["val_interval"] = plan.val_interval
    for name in ("lr", "batch_size"):  # what the user asked, where the run chose another value (--lr auto, ...)
        if getattr(asked, name) != getattr(cfg, name):
            resolved[f"{name}_requested"] = "auto" if getattr(asked, name) is None else getattr(asked, name)
    logs = RunLogs(run, start, tensorboard=cfg.tensorboard) if dist.main else None
    if dist.main:
        write_json_atomic(run.config, resolved)
        logger.info("training %s on %s (%d process(es)): %d steps, %d per epoch, global batch %d, %s captions, lr "
                    "%g%s; run folder %s", model.name, device, dist.world_size, plan.total_steps, plan.steps_per_epoch,
                    cfg.batch_size * cfg.accum_steps * dist.world_size, cfg.captions, cfg.lr,
                    " (auto)" if asked.lr is None else "", run.path)

    # train
    forward: Any = model
    if dist.active:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    state = RunState(start=start, step=start, checkpoint=resume_from, saved_step=start, best=best, val_split=val_split,
                     selects=selects, val_dir=val_dir, selected_on=selected_on)
    hooks = RunHooks(cfg=cfg, dist=dist, device=device, run=run, plan=plan, model=model, optimizer=optimizer,
                     scaler=scaler, state=state, resolved=resolved, logs=logs, validate=validate)
    epoch, batch = plan.position(start)
    batches = data_stream(holdout.train if holdout is not None else info, cfg, dist, tokenizer, start_epoch=epoch,
                          start_batch=batch, batches_epoch=plan.batches_per_epoch, pin_memory=device.type == "cuda",
                          exclude=holdout.keys if holdout is not None else frozenset())
    autocast = (functools.partial(torch.autocast, device.type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext)
    spec = LoopSpec(total_steps=plan.total_steps, warmup_steps=plan.warmup_steps,
                    steps_per_epoch=plan.steps_per_epoch, prepare=hooks.prepare, forward=forward, start_step=start,
                    autocast=autocast, scaler=scaler,
                    no_sync=forward.no_sync if dist.active else contextlib.nullcontext,
                    global_batch=cfg.batch_size * cfg.accum_steps * dist.world_size,
                    should_stop=functools.partial(stop_requested, dist, stop, device), val_interval=plan.val_interval)
    try:
        steps = train(cfg, model, optimizer, batches, spec, on_log=hooks.on_log,
                      on_validate=hooks.on_validate if val_split else None, on_checkpoint=hooks.on_checkpoint)
        signum = stop_requested(dist, stop, device) if steps < plan.total_steps else 0
        if signum:
            hooks.interrupted(steps, signum)
    except NonFiniteLossError as err:
        kept = state.checkpoint or "none written yet"
        raise NonFiniteLossError(f"{err} (last good checkpoint: {kept})") from None
    finally:
        batches.close()
        if logs is not None:
            logs.close()
    return TrainResult(run_dir=run.path, steps=steps, checkpoint=state.checkpoint, metrics=state.metrics)


def _resolved_config(cfg: TrainConfig, model: Any, run: RunDir, dist: Dist, device: torch.device,
                     dtype: Optional[torch.dtype], plan: RunPlan, info: SplitInfo, val_split: Optional[str],
                     history: Dict[str, List[Dict[str, Any]]]) -> Dict[str, Any]:
    """``train_config.json``: the options plus what the run really uses (weights, device, steps, shards)."""
    # what the run really starts from: a resumed run's weights come from its checkpoint, whose config is checked
    used = effective_pretrained(cfg.pretrained, model.model_cfg)
    resolved = {**dataclasses.asdict(cfg), "pretrained": used, "run_dir": run.path, "world_size": dist.world_size,
                "device": str(device),
                "amp_dtype": str(dtype).replace("torch.", "") if dtype else None, "total_steps": plan.total_steps,
                "steps_per_epoch": plan.steps_per_epoch, "warmup_steps": plan.warmup_steps, "val_split": val_split,
                "fda_version": __version__, "model_name": model.name,
                "shards": {"split": info.split, "videos": info.videos, "captions": info.captions,
                           "frames": info.frames, "size": info.size, "shards": len(info.shards),
                           "dir": recorded(info.shards_dir), "config": info.config},
                **history}
    if used != cfg.pretrained:
        resolved["pretrained_requested"] = cfg.pretrained
    return resolved


@dataclass
class RunHooks:
    """What the loop calls during one run: batch preparation, logging, checkpoints, validation.

    Rank 0 writes every file; the other ranks only take part in the collective steps (barriers, agreement).
    """

    cfg: TrainConfig
    dist: Dist
    device: torch.device
    run: RunDir
    plan: RunPlan
    model: Any
    optimizer: torch.optim.Optimizer
    scaler: Any
    state: RunState
    resolved: Dict[str, Any]
    logs: Optional["RunLogs"]
    validate: Optional[Validate]

    def prepare(self, batch: Dict[str, Any], step: int, micro: int) -> Tuple[torch.Tensor, Any, torch.Tensor]:
        """``LoopSpec.prepare``: a loader batch on the device, augmented with randomness drawn from the step."""
        from fda.model.transforms import random_resized_crop_flip, shard_batch_to_inputs

        model = self.model
        seed = step_seed(self.cfg.seed, self.dist.rank, step, micro)
        torch.manual_seed(seed)  # dropout and anything else drawing from the global generator
        images, alphas = shard_batch_to_inputs(batch["frames"], batch["masks"], model.image_size, device=self.device)
        if self.cfg.augment == "crop-flip":
            gen = torch.Generator().manual_seed(seed)
            images, alphas = random_resized_crop_flip(images, alphas, model.image_size, generator=gen)
        tokens = batch["tokens"].to(self.device, non_blocking=True)
        return images, (alphas if model.use_alpha else None), tokens

    def on_log(self, step: int, metrics: Dict[str, float]) -> None:
        """Every step: keep the metrics; rank 0 writes them (and a console line every ``--log-every``)."""
        if self.device.type == "cuda":
            metrics["train/max_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 2 ** 30
        self.state.step, self.state.metrics = step, metrics
        if self.logs is None:
            return
        self.logs.write(step, metrics)
        if step % self.cfg.log_every == 0 or step == self.plan.total_steps:
            logger.info("step %d/%d epoch %.2f loss %.4f lr %.2e alpha-lr %.2e scale %.1f batch-R@1 %.1f "
                        "%.1f samples/s data-wait %.0f%%", step, self.plan.total_steps, metrics["train/epoch"],
                        metrics["train/loss"], metrics["train/lr"], metrics["train/alpha_lr"],
                        metrics["train/logit_scale"], metrics["train/batch_t2v_R@1"],
                        metrics["train/samples_per_s"], 100 * metrics["train/data_wait"])

    def on_checkpoint(self, step: int) -> None:
        """Write the step checkpoint and drop those beyond ``--keep-last``."""
        path = self.run.step_checkpoint(step)
        if self.dist.main:
            self.save(path, step)
            self.run.prune(self.cfg.keep_last)
        self.state.checkpoint, self.state.saved_step = path, step

    def on_validate(self, step: int) -> Optional[Dict[str, float]]:
        """Validate on rank 0; a new best score is saved as ``best.pt``; a failure switches validation off."""
        state = self.state
        if state.val_split is None or self.validate is None:
            return None
        raw: Dict[str, float] = {}
        error = None
        if self.dist.main:
            self.model.eval()
            try:
                with torch.no_grad():
                    raw = self.validate(self.model, state.val_dir or self.cfg.shards_dir, state.val_split,
                                        self.device)
            except Exception as err:  # noqa: BLE001 - the step is saved; any validation failure only ends validation
                error = (str(err).strip().splitlines() or [type(err).__name__])[-1][:300]
                if not isinstance(err, FdaError):
                    logger.debug("validation error", exc_info=True)
            finally:
                self.model.train()
        error = agree(self.dist, error)
        if error is not None:
            logger.warning("step %d: validation on %s failed, validation is off for the rest of the run (training "
                           "goes on, checkpoint %s is saved): %s", step, state.val_split, state.checkpoint, error)
            state.val_split = None
            self.record({"step": step, "event": "validation failed; off from here", "error": error})
            return None
        result = None
        if self.dist.main:
            result = {(k if k.startswith("eval/") else f"eval/{k}"): float(v) for k, v in raw.items()
                      if isinstance(v, (int, float))}
            if self.logs is not None:
                self.logs.write(step, result)
            logger.info("step %d validation on %s: %s", step, state.val_split,
                        ", ".join(f"{k[5:]} {v:.2f}" for k, v in result.items() if "R@" in k))
            score = result.get(self.validate.best_key)
            if state.selects and score is not None and (state.best is None or score > state.best):
                state.best = score
                self.save(self.run.best, step, result)
                logger.info("step %d: best validation %s so far (%.2f), saved %s", step, self.validate.best_key,
                            score, self.run.best)
        barrier(self.dist)
        return result

    def interrupted(self, steps: int, signum: int) -> None:
        """After a stop signal: save the step reached, record the event, raise :class:`TrainInterrupted`."""
        name = signal.Signals(signum).name
        if steps > self.state.saved_step:
            self.on_checkpoint(steps)
        barrier(self.dist)
        self.record({"step": steps, "event": f"interrupted by {name}"})
        saved = f"saved {self.state.checkpoint}" if steps > self.state.start else "no step finished, nothing saved"
        raise TrainInterrupted(f"interrupted by {name} at step {steps} of {self.plan.total_steps}: {saved}; to "
                               f"resume, rerun with the same options and --out {self.run.path}", signum)

    def record(self, event: Dict[str, Any]) -> None:
        """Append an event to ``train_config.json``."""
        self.resolved["events"].append(event)
        if self.dist.main:
            write_json_atomic(self.run.config, self.resolved)

    def save(self, path: str, step: int, val_metrics: Optional[Dict[str, float]] = None) -> None:
        """Write a self-describing, resumable checkpoint (atomically, through ``fda.model.save_checkpoint``)."""
        from fda.model import save_checkpoint

        cfg = self.cfg
        epoch, batch = self.plan.position(step)
        extra = {
            "train_cfg": dataclasses.asdict(cfg),
            "step": step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"kind": "warmup-cosine", "step": step},
            "grad_scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "data": {"epoch": epoch, "batch": batch, "steps_per_epoch": self.plan.steps_per_epoch,
                     "world_size": self.dist.world_size, "workers": cfg.workers, "seed": cfg.seed,
                     "captions": cfg.captions, "batch_size": cfg.batch_size},
            "val_metrics": dict(val_metrics) if val_metrics else None,
            "selected_on": self.state.selected_on if val_metrics else None,  # best.pt: the split that chose it
            "best_r1": self.state.best,
        }
        save_checkpoint(path, self.model, **extra)
        logger.debug("checkpoint %s", path)


# ---------------------------------------------------------------------------------------------------------------
# Resuming.

RESUME_FIXED = fields_with(TrainConfig, resume="fixed")
"""Options a resume refuses to change: the model and its weights, and what shapes the data and its order."""

RESUME_IGNORED = fields_with(TrainConfig, resume="ignored")
"""Where the run lives: not options of the run itself."""


def _comparable(name: str, value: Any, model_cfg: Dict[str, Any]) -> Any:
    if name == "shards_dir" and isinstance(value, str):
        return recorded(value)
    if name == "model" and isinstance(value, str):
        return value.replace("/", "-")
    if name == "pretrained":
        return effective_pretrained(value, model_cfg)
    return value


def resume_changes(saved: Dict[str, Any], cfg: TrainConfig, model_cfg: Optional[Dict[str, Any]] = None
                   ) -> List[Tuple[str, Any, Any]]:
    """``(field, recorded, now)`` for every option that differs from the resumed run's and may change.

    Raises:
        ConfigError: an option of :data:`RESUME_FIXED` differs (the first one, with the recorded value to pass).
    """
    model_cfg = model_cfg or {}
    changed = []
    for f in dataclasses.fields(cfg):
        name = f.name
        if name not in saved or name in RESUME_IGNORED:
            continue
        old, new = saved[name], getattr(cfg, name)
        if _comparable(name, old, model_cfg) == _comparable(name, new, model_cfg):
            continue
        if name in RESUME_FIXED:
            shown = "none" if name == "pretrained" and _comparable(name, old, model_cfg) is None else old
            option = spelling(TrainConfig, name)
            if isinstance(old, bool):
                fix = f"{'pass' if old else 'drop'} {option}"
            else:
                fix = f"pass {'' if name == 'shards_dir' else option + ' '}{shown}"
            raise ConfigError(f"{option} is {new!r} but the run being resumed used {shown!r}: {fix} to "
                              f"resume it, or start a new run (another --out)")
        changed.append((name, old, new))
    return changed


def _resume(ckpt: Dict[str, Any], origin: RunDir, cfg: TrainConfig, dist: Dist, optimizer: torch.optim.Optimizer,
            scaler: Any, plan: RunPlan,
            best_key: Optional[str]) -> Tuple[int, Optional[float], Dict[str, List[Dict[str, Any]]]]:
    """Restore a checkpoint's training state; ``(step, best score so far, history)`` of the run it came from."""
    start, changed = _restore(ckpt, cfg, dist, optimizer, scaler, plan.steps_per_epoch)
    best = _best_so_far(ckpt, origin, start, best_key)
    history = _history(origin, start)
    if changed:
        logger.info("resuming at step %d with changed options, applied from this step on: %s", start,
                    ", ".join(f"{spelling(TrainConfig, k)} {old!r} -> {new!r}" for k, old, new in changed))
        history["changes"] += [{"step": start, "option": spelling(TrainConfig, k), "from": old, "to": new}
                               for k, old, new in changed]
    return start, best, history


def _history(run: RunDir, start: int) -> Dict[str, List[Dict[str, Any]]]:
    """The changes and events an earlier ``train_config.json`` of this run recorded up to ``start``."""
    doc = run.read_config()
    return {key: [e for e in doc.get(key) or [] if isinstance(e, dict) and e.get("step", 0) <= start]
            for key in ("changes", "events")}


def _best_so_far(ckpt: Dict[str, Any], run: RunDir, start: int, best_key: Optional[str]) -> Optional[float]:
    """The best validation score up to ``start``: the checkpoint's, or best.pt's when validation after it (at the
    same step) found a better one (the step checkpoint is written before its validation)."""
    best = ckpt.get("best_r1")
    if best_key is None or not os.path.isfile(run.best):
        return best
    try:
        meta = torch.load(run.best, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable best.pt is simply replaced by the next best
        return best
    score = (meta.get("val_metrics") or {}).get(best_key)
    if score is not None and int(meta.get("step", 0)) <= start and (best is None or score > best):
        best = float(score)
    return best


def _restore(ckpt: Dict[str, Any], cfg: TrainConfig, dist: Dist, optimizer: torch.optim.Optimizer, scaler: Any,
             steps_per_epoch: int) -> Tuple[int, List[Tuple[str, Any, Any]]]:
    """Check the options against the checkpoint's, load optimiser, scaler and RNG states.

    The optimiser keeps this run's learning rates and weight decay (a changed ``--lr`` applies from here on).

    Returns:
        ``(step, changed options)`` (see :func:`resume_changes`).
    """
    changed = resume_changes(ckpt.get("train_cfg") or {}, cfg, ckpt.get("model_cfg") or {})
    data = ckpt.get("data") or {}
    if data.get("steps_per_epoch") not in (None, steps_per_epoch):
        raise ConfigError(f"resuming with {steps_per_epoch} steps per epoch, the run had "
                          f"{data['steps_per_epoch']}: the shards or the process count changed; start a new run")
    for what, now in (("world_size", dist.world_size), ("workers", cfg.workers)):
        if data.get(what) not in (None, now):
            logger.warning("the interrupted run had %s %s, this one %s: training continues at the same step, but "
                           "the batches after it differ from an uninterrupted run",
                           spelling(TrainConfig, what) if what == "workers" else what, data[what], now)
    hyper = [{k: g[k] for k in ("lr", "base_lr", "weight_decay")} for g in optimizer.param_groups]
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except (KeyError, ValueError) as err:
        raise InputError(f"cannot restore the optimiser from the checkpoint ({err}): the trainable parameters "
                         f"changed (--freeze-text, --no-alpha?); use the same options or start a new run") from None
    for group, values in zip(optimizer.param_groups, hyper):
        group.update(values)  # load_state_dict brings back the old rates; this run's options win
    if scaler is not None and ckpt.get("grad_scaler"):
        scaler.load_state_dict(ckpt["grad_scaler"])
    rng = ckpt.get("rng") or {}
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if rng.get("cuda") and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return int(ckpt.get("step", 0)), changed


class RunLogs:
    """``metrics.jsonl`` plus TensorBoard events; a resumed run drops what the interrupted one logged past its step."""

    def __init__(self, run: RunDir, start_step: int, tensorboard: bool = True) -> None:
        make_out_dir(run.path)
        self.path = run.metrics
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                kept = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= start_step]
            with open(self.path, "w", encoding="utf-8") as f:
                f.writelines(kept)
        self.file = open(self.path, "a", encoding="utf-8")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(run.tensorboard, purge_step=start_step + 1 if start_step else None)
            except ImportError:
                logger.warning("tensorboard is not installed: no TensorBoard events (pip install tensorboard)")

    def write(self, step: int, metrics: Dict[str, float]) -> None:
        """Append one JSON line (and TensorBoard scalars) for ``step``."""
        self.file.write(json.dumps({"step": step, **metrics}) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in metrics.items():
                self.tb.add_scalar(key, value, step)

    def close(self) -> None:
        """Flush and close."""
        self.file.close()
        if self.tb is not None:
            self.tb.close()
