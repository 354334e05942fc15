"""``fda train``: build model, data, optimiser; run the loop; log, validate, checkpoint, resume.

One process or many: under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) :func:`run_train` opens the process
group itself (nccl on GPU, gloo on CPU) and closes it at the end; nothing distributed happens at import.

A run folder holds::

    RUN_DIR/train_config.json        the resolved config (+ world size, steps, manifest summary)
    RUN_DIR/metrics.jsonl            one line per step: train/* metrics (and eval/* when validated)
    RUN_DIR/tb/                      TensorBoard events (same keys)
    RUN_DIR/checkpoints/step-0000100.pt   the last --keep-last checkpoints, written atomically
    RUN_DIR/checkpoints/best.pt      the best by validation t2v R@1

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
import glob
import itertools
import json
import logging
import os
import re
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch

from fda import __version__
from fda.config import TrainConfig, make_out_dir
from fda.errors import ConfigError, EnvError, FdaError, InputError
from fda.shards.loader import batches_per_epoch, build_train_pipeline, check_plan
from fda.shards.manifest import SplitInfo, load_manifest, load_split
from fda.shards.schema import read_json, write_json_atomic
from fda.train.loop import LoopSpec, NonFiniteLossError, step_seed, train
from fda.train.optim import build_optimizer, default_warmup, freeze_text_tower

logger = logging.getLogger(__name__)

Validate = Callable[[torch.nn.Module, str, str, torch.device], Dict[str, float]]
"""``validate(model, shards_dir, split, device) -> {"t2v_R@1": ..., ...}``: the CLI wires ``fda.eval`` in."""

CKPT_RE = re.compile(r"^step-(\d+)\.pt$")
BEST = "best.pt"
R1_KEYS = ("eval/t2v_R@1", "t2v_R@1", "t2v/R@1", "R@1")


class TrainInterrupted(FdaError):
    """SIGINT/SIGTERM stopped the run at a step boundary after saving it; the exit code is 128 + the signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class StopSignals:
    """While active (a ``with`` block), SIGINT/SIGTERM only ask the run to stop after the current step.

    Handlers are installed only in the main thread of the main interpreter (signal's own rule); elsewhere ``signum``
    stays None. A second signal raises :class:`KeyboardInterrupt` (abort without saving).
    """

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._old: Dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        logger.warning("%s: stopping after this step and saving a checkpoint (send it again to abort without saving)",
                       signal.Signals(signum).name)


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


# ---------------------------------------------------------------------------------------------------------------
# Environment: processes and device.

@dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """True on rank 0 (the one that writes files)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when a process group is in use."""
        return self.world_size > 1


def dist_from_env() -> Dist:
    """Read torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (single process when absent)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise EnvError(f"bad torchrun environment ({err}): launch with torchrun or unset RANK/WORLD_SIZE") from None
    return Dist(rank=rank, world_size=max(1, world), local_rank=local)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: cuda (this process's GPU), then mps, then cpu; an explicit device must exist.

    Raises:
        EnvError: ``cuda`` or ``mps`` was asked for and is not available.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EnvError(f"--device {name}: no CUDA device is available; use --device cpu or auto")
        return torch.device(name) if ":" in name else torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise EnvError("--device mps: MPS is not available; use --device cpu or auto")
    return torch.device(name)


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
# Run folder and checkpoints.

def default_run_dir(cfg: TrainConfig) -> str:
    """``runs/<date>-<time>-<model>``, unique."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join("runs", f"{stamp}-{re.sub(r'[^A-Za-z0-9_-]+', '_', cfg.model)}")
    path, n = base, 1
    while os.path.exists(path):
        n += 1
        path = f"{base}-{n}"
    return path


def list_checkpoints(run_dir: str) -> List[Tuple[int, str]]:
    """``(step, path)`` of a run's step checkpoints, oldest first."""
    found = []
    for path in glob.glob(os.path.join(run_dir, "checkpoints", "step-*.pt")):
        m = CKPT_RE.match(os.path.basename(path))
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def _resume_source(cfg: TrainConfig, run_dir: str) -> Optional[str]:
    """The checkpoint to resume from: ``--resume`` (a file or a run folder), else the run folder's newest."""
    if cfg.resume:
        if os.path.isfile(cfg.resume):
            return cfg.resume
        if os.path.isdir(cfg.resume):
            found = list_checkpoints(cfg.resume)
            if not found:
                raise InputError(f"--resume {cfg.resume}: no checkpoints/step-*.pt in it: pass a checkpoint file")
            return found[-1][1]
        raise InputError(f"--resume {cfg.resume}: no such file or folder")
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def _run_dir_of(checkpoint: str) -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(checkpoint)))


def _r1(metrics: Optional[Dict[str, float]]) -> Optional[float]:
    if not metrics:
        return None
    for key in R1_KEYS:
        if key in metrics:
            return float(metrics[key])
    return None


# ---------------------------------------------------------------------------------------------------------------
# Data.

def tokenize_batch(tokenizer: Callable[[List[str]], torch.Tensor], batch: Dict[str, Any]) -> Dict[str, Any]:
    """``batch_fn`` for the loader: tokenise the captions inside the worker."""
    return {"tokens": tokenizer(batch["captions"])}


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # decoding is PIL work; torch threads in workers only oversubscribe the cores
    # Ctrl-C reaches the whole process group: the main process stops at a step boundary and shuts its workers down;
    # a worker dying on the signal first would turn that into a DataLoader error. SIGTERM keeps its default: it is
    # how a worker is ended (multiprocessing's terminate at exit); ignoring it could leave the process unable to exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _loader_error(err: Exception) -> Exception:
    """A DataLoader re-raises a worker's FdaError with the worker traceback as message: keep the original line."""
    if isinstance(err, FdaError):
        lines = [ln for ln in str(err).splitlines() if ln.strip()]
        last = lines[-1] if lines else str(err)
        if ": " in last and last.split(": ", 1)[0].endswith(type(err).__name__):
            last = last.split(": ", 1)[1]
        clean = type(err)(last)
        return clean
    return err


def data_stream(info: SplitInfo, cfg: TrainConfig, dist: Dist, tokenizer: Any, *, start_epoch: int, start_batch: int,
                batches_epoch: int, pin_memory: bool = False) -> Iterator[Dict[str, Any]]:
    """Endless batches for this rank: ``batches_epoch`` per epoch, from ``(start_epoch, start_batch)`` on.

    Each epoch gets its own pipeline and DataLoader (the epoch seeds the shard deal and every shuffle), so a
    position is just ``(epoch, batch)``.
    """
    from torch.utils.data import DataLoader

    batch_fn = functools.partial(tokenize_batch, tokenizer)
    for epoch in itertools.count(start_epoch):
        skip = start_batch if epoch == start_epoch else 0
        pipeline = build_train_pipeline(info, batch_size=cfg.batch_size, captions=cfg.captions, seed=cfg.seed,
                                        epoch=epoch, rank=dist.rank, world_size=dist.world_size, workers=cfg.workers,
                                        shuffle_buffer=cfg.shuffle_buffer, skip=skip, batch_fn=batch_fn)
        loader = DataLoader(pipeline, batch_size=None, num_workers=cfg.workers, pin_memory=pin_memory,
                            worker_init_fn=_worker_init if cfg.workers else None)
        iterator = iter(loader)
        try:
            for _ in range(batches_epoch - skip):
                try:
                    batch = next(iterator)
                except FdaError as err:
                    raise _loader_error(err) from None
                yield batch
        finally:
            # Stop this epoch's workers now: after an error the traceback still references the iterator, and its
            # workers would otherwise wait on their queues until the interpreter exits.
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            del iterator


# ---------------------------------------------------------------------------------------------------------------
# Model.

def _build_model(cfg: TrainConfig, info: SplitInfo, device: torch.device,
                 resume_from: Optional[str]) -> Tuple[Any, Any, Dict]:
    """``(model, tokenizer, checkpoint or {})``; a resumed run rebuilds the model from its checkpoint."""
    from fda.model import get_model_config, get_tokenizer, load_alpha_clip, load_checkpoint

    if resume_from:
        model, ckpt = load_checkpoint(resume_from, device)
        return model, get_tokenizer(model.context_length), ckpt
    config = get_model_config(cfg.model)
    size = config.get("model_cfg", {}).get("vision_cfg", {}).get("image_size")
    if isinstance(size, int) and info.size and info.size < size:  # before any download
        raise InputError(f"shards in {info.shards_dir} are {info.size} px but {cfg.model} takes {size} px: rerun "
                         f"fda preprocess --size {size} (or larger)")
    pretrained = effective_pretrained(cfg.pretrained, config)
    if cfg.pretrained and pretrained is None and cfg.pretrained.lower() != "none":
        logger.info("--model %s has no OpenAI weights: starting from random weights", cfg.model)
    model, tokenizer = load_alpha_clip(cfg.model, pretrained, cfg.alpha_checkpoint, device,
                                       use_alpha=not cfg.no_alpha)
    return model, tokenizer, {}


def effective_pretrained(pretrained: Optional[str], config: Dict[str, Any]) -> Optional[str]:
    """The weights a run really starts from: None for ``none`` (any case), and for ``openai`` on a model without
    OpenAI weights (fda-tiny); otherwise ``pretrained``."""
    from fda.model.factory import normalize_pretrained

    pretrained = normalize_pretrained(pretrained)
    if pretrained == "openai" and not config.get("fda", {}).get("open_clip_name"):
        return None
    return pretrained


def check_shards_fit(info: SplitInfo, model: Any) -> None:
    """Refuse shards the model cannot take: frames smaller than its input, or more frames than it pools.

    Raises:
        InputError: the message names the shard value, the model value and the fix.
    """
    if info.size and info.size < model.image_size:
        raise InputError(f"shards in {info.shards_dir} are {info.size} px but {model.name} takes "
                         f"{model.image_size} px: rerun fda preprocess --size {model.image_size} (or larger)")
    max_frames = model.model_cfg.get("fda", {}).get("max_frames")
    if info.frames < 1 or (max_frames and info.frames > max_frames):
        raise InputError(f"shards in {info.shards_dir} have {info.frames} frames per clip but {model.name} takes "
                         f"1..{max_frames or 'any'}: rerun fda preprocess --frames-train N")


def _val_split(cfg: TrainConfig) -> Optional[str]:
    if cfg.val_split == "none":
        return None
    splits = load_manifest(cfg.shards_dir).get("splits", {})
    if cfg.val_split == "auto":
        return next((s for s in ("val", "test") if splits.get(s)), None)
    if not splits.get(cfg.val_split):
        raise InputError(f"--val-split {cfg.val_split}: {cfg.shards_dir} has no such split: preprocess it or pass "
                         f"--val-split none")
    return cfg.val_split


# ---------------------------------------------------------------------------------------------------------------
# The run.

def run_train(cfg: TrainConfig, validate: Optional[Validate] = None) -> TrainResult:
    """Train as ``cfg`` says (see the module docstring).

    Args:
        cfg: the run configuration.
        validate: optional ``validate(model, shards_dir, split, device) -> metrics`` for periodic validation (the CLI
            passes ``fda.eval``'s); called on rank 0 only, in eval mode, under ``torch.no_grad``.

    Returns:
        The run folder, steps done, last checkpoint and last metrics.

    Raises:
        InputError: no/empty split, shards the model cannot take, a stream with no readable sample.
        ConfigError: inconsistent options (batch larger than a stream's videos, fp16 on CPU, ...).
        EnvError: no device, weights that cannot be downloaded.
        NonFiniteLossError: the loss diverged; the last good checkpoint is kept.
        TrainInterrupted: SIGINT/SIGTERM; the step reached is saved (exit code 130/143).
    """
    if cfg.out:
        make_out_dir(cfg.out)  # a file or an unwritable place fails here, in one line, before any model is built
    dist = dist_from_env()
    device = resolve_device(cfg.device, dist.local_rank)
    info = load_split(cfg.shards_dir, cfg.split)  # fails fast, before any process group or model
    steps_per_epoch = max(1, batches_per_epoch(info, cfg.captions, cfg.batch_size, dist.world_size) // cfg.accum_steps)
    epochs = -(-(cfg.max_steps or cfg.epochs * steps_per_epoch) // steps_per_epoch)
    for epoch in range(min(epochs, 1000)):  # every epoch's shard deal must let each stream fill a batch
        check_plan(info, cfg.batch_size, dist.world_size, cfg.workers, cfg.seed, epoch, cfg.captions)
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
            return _run(cfg, dist, device, info, validate, stop)
    finally:
        if pg is not None and pg.is_initialized():
            pg.destroy_process_group()


def _agree(dist: Dist, value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not dist.active:
        return value
    import torch.distributed as tdist

    box = [value]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def _barrier(dist: Dist) -> None:
    if dist.active:
        import torch.distributed as tdist

        tdist.barrier()


def _stop_requested(dist: Dist, stop: StopSignals, device: torch.device) -> int:
    """The signal that asks to stop (0: none), agreed on by every rank so that all stop at the same step."""
    signum = stop.signum or 0
    if not dist.active:
        return signum
    import torch.distributed as tdist

    flag = torch.tensor([signum], dtype=torch.int64, device=device if device.type == "cuda" else "cpu")
    tdist.all_reduce(flag, op=tdist.ReduceOp.MAX)
    return int(flag.item())


def _run(cfg: TrainConfig, dist: Dist, device: torch.device, info: SplitInfo, validate: Optional[Validate],
         stop: StopSignals) -> TrainResult:
    resume_dir = None
    if cfg.resume:
        resume_dir = _run_dir_of(cfg.resume) if os.path.isfile(cfg.resume) else cfg.resume
    run_dir = cfg.out or resume_dir
    run_dir = _agree(dist, run_dir or default_run_dir(cfg))
    resume_from = _resume_source(cfg, run_dir)
    if resume_from:
        logger.info("resuming from %s", resume_from)
    torch.manual_seed(cfg.seed)  # a randomly initialised model is the same for the same seed (and on every rank)
    model, tokenizer, ckpt = _build_model(cfg, info, device, resume_from)
    check_shards_fit(info, model)
    if cfg.no_alpha:
        model.use_alpha = False
        for p in model.alpha_parameters():
            p.requires_grad_(False)  # an unused conv would only confuse DDP and weight decay
    if cfg.freeze_text:
        freeze_text_tower(model)
    if cfg.grad_checkpointing:
        model.clip.set_grad_checkpointing(True)
    model.train()

    # length of the run, from the manifest's counts
    batches_epoch = batches_per_epoch(info, cfg.captions, cfg.batch_size, dist.world_size)
    steps_per_epoch = max(1, batches_epoch // cfg.accum_steps)
    batches_epoch = steps_per_epoch * cfg.accum_steps
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else default_warmup(total)

    optimizer = build_optimizer(model, lr=cfg.lr, alpha_lr=cfg.alpha_lr, weight_decay=cfg.weight_decay)
    dtype = amp_dtype(cfg.precision, device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    start = 0
    best = None
    history: Dict[str, List[Dict[str, Any]]] = {"changes": [], "events": []}
    if ckpt:
        start = _restore(ckpt, cfg, dist, optimizer, scaler, steps_per_epoch)
        best = _best_so_far(ckpt, _run_dir_of(resume_from), start)  # type: ignore[arg-type]
        history = _history(_run_dir_of(resume_from), start)  # type: ignore[arg-type]
        changed = resume_changes(ckpt.get("train_cfg") or {}, cfg, ckpt.get("model_cfg") or {})
        if changed:
            logger.info("resuming at step %d with changed options, applied from this step on: %s", start,
                        ", ".join(f"{flag_name(k)} {old!r} -> {new!r}" for k, old, new in changed))
            history["changes"] += [{"step": start, "option": flag_name(k), "from": old, "to": new}
                                   for k, old, new in changed]
    if start >= total:
        logger.info("nothing to do: the run is at step %d of %d", start, total)
    forward: Any = model
    if dist.active:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    val_split = _val_split(cfg) if validate is not None else None
    if cfg.val_split == "none":
        logger.info("validation off (--val-split none)")
    elif validate is None:
        logger.info("validation off: no evaluator wired in")
    elif val_split is None:
        logger.info("validation off: %s has no val or test split", cfg.shards_dir)
    # what the run really starts from: a resumed run's weights come from its checkpoint, whose config is checked
    used = effective_pretrained(cfg.pretrained, model.model_cfg)
    resolved = {**dataclasses.asdict(cfg), "pretrained": used, "run_dir": run_dir, "world_size": dist.world_size,
                "device": str(device),
                "amp_dtype": str(dtype).replace("torch.", "") if dtype else None, "total_steps": total,
                "steps_per_epoch": steps_per_epoch, "warmup_steps": warmup, "val_split": val_split,
                "fda_version": __version__, "model_name": model.name,
                "shards": {"split": info.split, "videos": info.videos, "captions": info.captions,
                           "frames": info.frames, "size": info.size, "shards": len(info.shards),
                           "dir": os.path.abspath(info.shards_dir), "config": info.config},
                **history}
    if used != cfg.pretrained:
        resolved["pretrained_requested"] = cfg.pretrained
    logs = RunLogs(run_dir, start, tensorboard=cfg.tensorboard) if dist.main else None
    if dist.main:
        write_json_atomic(os.path.join(run_dir, "train_config.json"), resolved)
        logger.info("training %s on %s (%d process(es)): %d steps, %d per epoch, global batch %d, %s captions; "
                    "run folder %s", model.name, device, dist.world_size, total, steps_per_epoch,
                    cfg.batch_size * cfg.accum_steps * dist.world_size, cfg.captions, run_dir)

    def prepare(batch: Dict[str, Any], step: int, micro: int):
        from fda.model.transforms import random_resized_crop_flip, shard_batch_to_inputs

        seed = step_seed(cfg.seed, dist.rank, step, micro)
        torch.manual_seed(seed)  # dropout and anything else drawing from the global generator
        images, alphas = shard_batch_to_inputs(batch["frames"], batch["masks"], model.image_size, device=device)
        if cfg.augment == "crop-flip":
            gen = torch.Generator().manual_seed(seed)
            images, alphas = random_resized_crop_flip(images, alphas, model.image_size, generator=gen)
        tokens = batch["tokens"].to(device, non_blocking=True)
        return images, (alphas if model.use_alpha else None), tokens

    state: Dict[str, Any] = {"last_ckpt": resume_from, "last_step": start, "metrics": {}, "best": best,
                             "val_split": val_split}

    def on_log(step: int, metrics: Dict[str, float]) -> None:
        if device.type == "cuda":
            metrics["train/max_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
        state["metrics"] = metrics
        if logs is not None:
            logs.write(step, metrics)
            if step % cfg.log_every == 0 or step == total:
                logger.info("step %d/%d epoch %.2f loss %.4f lr %.2e alpha-lr %.2e scale %.1f batch-R@1 %.1f "
                            "%.1f samples/s data-wait %.0f%%", step, total, metrics["train/epoch"],
                            metrics["train/loss"], metrics["train/lr"], metrics["train/alpha_lr"],
                            metrics["train/logit_scale"], metrics["train/batch_t2v_R@1"],
                            metrics["train/samples_per_s"], 100 * metrics["train/data_wait"])

    def record(event: Dict[str, Any]) -> None:
        resolved["events"].append(event)
        if dist.main:
            write_json_atomic(os.path.join(run_dir, "train_config.json"), resolved)

    def on_validate(step: int) -> Optional[Dict[str, float]]:
        if state["val_split"] is None:
            return None
        result = None
        error = None
        if dist.main:
            model.eval()
            try:
                with torch.no_grad():
                    raw = validate(model, cfg.shards_dir, val_split, device)  # type: ignore[misc]
            except Exception as err:  # noqa: BLE001 - the step is saved; any validation failure only ends validation
                error = (str(err).strip().splitlines() or [type(err).__name__])[-1][:300]
                if not isinstance(err, FdaError):
                    logger.debug("validation error", exc_info=True)
            finally:
                model.train()
        error = _agree(dist, error)
        if error is not None:
            logger.warning("step %d: validation on %s failed, validation is off for the rest of the run (training "
                           "goes on, checkpoint %s is saved): %s", step, val_split, state["last_ckpt"], error)
            state["val_split"] = None
            record({"step": step, "event": "validation failed; off from here", "error": error})
            return None
        if dist.main:
            result = {(k if k.startswith("eval/") else f"eval/{k}"): float(v) for k, v in raw.items()
                      if isinstance(v, (int, float))}
            if logs is not None:
                logs.write(step, result)
            logger.info("step %d validation on %s: %s", step, val_split,
                        ", ".join(f"{k[5:]} {v:.2f}" for k, v in result.items() if "R@" in k))
            r1 = _r1(result)
            if r1 is not None and (state["best"] is None or r1 > state["best"]):
                state["best"] = r1
                path = os.path.join(run_dir, "checkpoints", BEST)
                _save(path, step, model, optimizer, scaler, cfg, dist, steps_per_epoch, result, state)
                logger.info("step %d: best validation R@1 so far (%.2f), saved %s", step, r1, path)
        _barrier(dist)
        return result

    def on_checkpoint(step: int) -> None:
        path = os.path.join(run_dir, "checkpoints", f"step-{step:07d}.pt")
        if dist.main:
            _save(path, step, model, optimizer, scaler, cfg, dist, steps_per_epoch, None, state)
            for _, old in list_checkpoints(run_dir)[:-cfg.keep_last]:
                os.remove(old)
        state["last_ckpt"] = path
        state["last_step"] = step

    batches = data_stream(info, cfg, dist, tokenizer, start_epoch=start // steps_per_epoch,
                          start_batch=(start % steps_per_epoch) * cfg.accum_steps, batches_epoch=batches_epoch,
                          pin_memory=device.type == "cuda")
    autocast = (functools.partial(torch.autocast, device.type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext)
    spec = LoopSpec(total_steps=total, warmup_steps=warmup, steps_per_epoch=steps_per_epoch, prepare=prepare,
                    forward=forward, start_step=start, autocast=autocast, scaler=scaler,
                    no_sync=forward.no_sync if dist.active else contextlib.nullcontext,
                    global_batch=cfg.batch_size * cfg.accum_steps * dist.world_size,
                    should_stop=functools.partial(_stop_requested, dist, stop, device))
    try:
        steps = train(cfg, model, optimizer, batches, spec, on_log=on_log,
                      on_validate=on_validate if val_split else None, on_checkpoint=on_checkpoint)
        signum = _stop_requested(dist, stop, device) if steps < total else 0
        if signum:
            name = signal.Signals(signum).name
            if steps > state["last_step"]:
                on_checkpoint(steps)
            _barrier(dist)
            record({"step": steps, "event": f"interrupted by {name}"})
            saved = f"saved {state['last_ckpt']}" if steps > start else "no step finished, nothing saved"
            raise TrainInterrupted(f"interrupted by {name} at step {steps} of {total}: {saved}; to resume, rerun with "
                                   f"the same options and --out {run_dir}", signum)
    except NonFiniteLossError as err:
        kept = state["last_ckpt"] or "none written yet"
        raise NonFiniteLossError(f"{err} (last good checkpoint: {kept})") from None
    finally:
        batches.close()
        if logs is not None:
            logs.close()
    return TrainResult(run_dir=run_dir, steps=steps, checkpoint=state["last_ckpt"], metrics=state["metrics"])


def _save(path: str, step: int, model: Any, optimizer: torch.optim.Optimizer, scaler: Any, cfg: TrainConfig,
          dist: Dist, steps_per_epoch: int, val_metrics: Optional[Dict[str, float]], state: Dict[str, Any]) -> None:
    """Write a self-describing, resumable checkpoint (atomically, through ``fda.model.save_checkpoint``)."""
    from fda.model import save_checkpoint

    extra = {
        "train_cfg": dataclasses.asdict(cfg),
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": {"kind": "warmup-cosine", "step": step},
        "grad_scaler": scaler.state_dict() if scaler is not None else None,
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        "data": {"epoch": step // steps_per_epoch, "batch": (step % steps_per_epoch) * cfg.accum_steps,
                 "steps_per_epoch": steps_per_epoch, "world_size": dist.world_size, "workers": cfg.workers,
                 "seed": cfg.seed, "captions": cfg.captions, "batch_size": cfg.batch_size},
        "val_metrics": dict(val_metrics) if val_metrics else None,
        "best_r1": state["best"],
    }
    save_checkpoint(path, model, **extra)
    logger.debug("checkpoint %s", path)


RESUME_FIXED = ("model", "pretrained", "alpha_checkpoint", "no_alpha", "freeze_text", "shards_dir", "split",
                "batch_size", "accum_steps", "captions", "seed", "shuffle_buffer", "augment")
"""Options a resume refuses to change: the model and its weights, and what shapes the data and its order."""

RESUME_IGNORED = ("out", "resume")
"""Where the run lives: not options of the run itself."""


def flag_name(field: str) -> str:
    """How ``fda train`` spells a config field: ``lr`` -> ``--lr``, ``workers`` -> ``--loader-workers``."""
    return {"workers": "--loader-workers", "shards_dir": "SHARDS_DIR"}.get(field, "--" + field.replace("_", "-"))


def _comparable(name: str, value: Any, model_cfg: Dict[str, Any]) -> Any:
    if name == "shards_dir" and isinstance(value, str):
        return os.path.abspath(value)
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
            if isinstance(old, bool):
                fix = f"{'pass' if old else 'drop'} {flag_name(name)}"
            else:
                fix = f"pass {'' if name == 'shards_dir' else flag_name(name) + ' '}{shown}"
            raise ConfigError(f"{flag_name(name)} is {new!r} but the run being resumed used {shown!r}: {fix} to "
                              f"resume it, or start a new run (another --out)")
        changed.append((name, old, new))
    return changed


def _history(run_dir: str, start: int) -> Dict[str, List[Dict[str, Any]]]:
    """The changes and events an earlier ``train_config.json`` of this run recorded up to ``start``."""
    path = os.path.join(run_dir, "train_config.json")
    try:
        doc = read_json(path) if os.path.isfile(path) else {}
    except (OSError, ValueError, FdaError):
        doc = {}
    return {key: [e for e in doc.get(key) or [] if isinstance(e, dict) and e.get("step", 0) <= start]
            for key in ("changes", "events")}


def _best_so_far(ckpt: Dict[str, Any], run_dir: str, start: int) -> Optional[float]:
    """The best validation R@1 up to ``start``: the checkpoint's, or best.pt's when validation after it (at the
    same step) found a better one (the step checkpoint is written before its validation)."""
    best = ckpt.get("best_r1")
    path = os.path.join(run_dir, "checkpoints", BEST)
    if os.path.isfile(path):
        try:
            meta = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - an unreadable best.pt is simply replaced by the next best
            return best
        r1 = _r1(meta.get("val_metrics"))
        if r1 is not None and int(meta.get("step", 0)) <= start and (best is None or r1 > best):
            best = r1
    return best


def _restore(ckpt: Dict[str, Any], cfg: TrainConfig, dist: Dist, optimizer: torch.optim.Optimizer, scaler: Any,
             steps_per_epoch: int) -> int:
    """Check the options against the checkpoint's, load optimiser, scaler and RNG states; return the step.

    The optimiser keeps this run's learning rates and weight decay (a changed ``--lr`` applies from here on).
    """
    resume_changes(ckpt.get("train_cfg") or {}, cfg, ckpt.get("model_cfg") or {})
    data = ckpt.get("data") or {}
    if data.get("steps_per_epoch") not in (None, steps_per_epoch):
        raise ConfigError(f"resuming with {steps_per_epoch} steps per epoch, the run had "
                          f"{data['steps_per_epoch']}: the shards or the process count changed; start a new run")
    for what, now in (("world_size", dist.world_size), ("workers", cfg.workers)):
        if data.get(what) not in (None, now):
            logger.warning("the interrupted run had %s %s, this one %s: training continues at the same step, but "
                           "the batches after it differ from an uninterrupted run",
                           flag_name(what) if what == "workers" else what, data[what], now)
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
    return int(ckpt.get("step", 0))


class RunLogs:
    """``metrics.jsonl`` plus TensorBoard events; a resumed run drops what the interrupted one logged past its step."""

    def __init__(self, run_dir: str, start_step: int, tensorboard: bool = True) -> None:
        make_out_dir(run_dir)
        self.path = os.path.join(run_dir, "metrics.jsonl")
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

                self.tb = SummaryWriter(os.path.join(run_dir, "tb"), purge_step=start_step + 1 if start_step else None)
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
