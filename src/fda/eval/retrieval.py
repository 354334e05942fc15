"""Retrieval evaluation: encode a split's videos and captions from shards, rank, report.

Library entry points:

* :func:`evaluate_split` takes an already-built model (the trainer's periodic validation passes it in through a
  callback, so ``fda.train`` never imports this module) and returns metrics for one split.
* :func:`run_eval` is ``fda eval``: it resolves the model (a run's best checkpoint, a checkpoint file, or a model
  that was never trained), caches features keyed by model and shards, writes a JSON report and renders a table.

The split is read with :func:`fda.shards.reader.iter_samples` in manifest order with ``reraise_exception``: every
sample must count, so a corrupt or short shard is an :class:`~fda.errors.InputError` naming it. Video ``i`` is the
``i``-th sample written; captions follow in video order and ``text_to_video`` maps them back. A split where every
video has exactly one caption (MSR-VTT 1k-A) is ranked with the square protocol, any other with the multi-caption
protocol (MSVD), both as :mod:`fda.eval.metrics` documents.
"""

import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from webdataset.handlers import reraise_exception

from fda import __version__
from fda.config import EvalConfig
from fda.errors import EnvError, InputError
from fda.eval.metrics import DIRECTIONS, METRIC_KEYS, dsl_retrieval_metrics, embedding_retrieval_metrics
from fda.shards.manifest import SplitInfo, load_split
from fda.shards.reader import decode_sample, iter_samples
from fda.shards.schema import MANIFEST, shown_mask, write_json_atomic

logger = logging.getLogger(__name__)

PROTOCOLS = {
    "square": "one caption per video: square matrix, ground truth on the diagonal (MSR-VTT 1k-A; one paragraph per "
              "video: ActivityNet, DiDeMo)",
    "multi": "several captions per video: T2V over every caption, V2T by each video's best caption (MSVD)",
}
CHECKPOINT_NAMES = ("checkpoints/best.pt", "best.pt")
DENSE_LIMIT = 50_000_000  # matrix entries below which the dense DSL path is used (same numbers, less overhead)


# --------------------------------------------------------------------------------------------------------------
# Reading a split


def _raw_samples(url: str) -> Iterator[Dict[str, Any]]:
    """Raw samples of one shard, in the order written (no shuffle; errors raised)."""
    return iter_samples([url], handler=reraise_exception)  # tar -> {__key__, member: bytes}; never skip


def iter_split_batches(info: SplitInfo, batch_size: int, *, workers: int = 0) -> Iterator[List[Dict[str, Any]]]:
    """Decoded samples of a split, in manifest order, ``batch_size`` at a time.

    Args:
        info: the split, from :func:`fda.shards.manifest.load_split`.
        batch_size: samples per yielded list.
        workers: decoding threads (0: decode in this thread).

    Yields:
        Lists of :func:`fda.shards.reader.decode_sample` dicts (``frames`` uint8 ``[T, H, W, 3]``, ``masks``
        uint8 ``[T, H, W]``, ``meta``, ``captions``).

    Raises:
        InputError: a shard is unreadable or corrupt, holds another number of samples than the manifest says, or
            a sample has another frame count than the split.
    """
    pool = ThreadPoolExecutor(workers) if workers > 0 else None
    decode = pool.map if pool is not None else map
    batch: List[Dict[str, Any]] = []
    try:
        for shard in info.shards:
            name = os.path.basename(shard.url)
            seen = 0
            raw_iter = _raw_samples(shard.url)
            while True:
                try:
                    raws = [raw for _, raw in zip(range(batch_size), raw_iter)]
                    decoded = list(decode(decode_sample, raws))
                except InputError as err:
                    raise InputError(f"shard {name}: {err}") from None
                except Exception as err:  # noqa: BLE001 - tar, gzip, PIL and OS errors: all mean a corrupt shard
                    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                    raise InputError(f"shard {name} is corrupt or unreadable ({type(err).__name__}: {first}): every "
                                     f"eval sample must count; rerun fda preprocess for split {info.split}") from None
                for sample in decoded:
                    if info.frames and sample["frames"].shape[0] != info.frames:
                        raise InputError(f"shard {name}: sample {sample['key']} has {sample['frames'].shape[0]} "
                                         f"frames, the manifest says {info.frames}: rerun fda preprocess")
                    batch.append(sample)
                    if len(batch) == batch_size:
                        yield batch
                        batch = []
                seen += len(decoded)
                if len(raws) < batch_size:
                    break
            if seen != shard.samples:
                raise InputError(f"shard {name} holds {seen} samples, the manifest says {shard.samples}: the shard "
                                 f"is truncated or was replaced; rerun fda preprocess for split {info.split}")
        if batch:
            yield batch
    finally:
        if pool is not None:
            pool.shutdown()


# --------------------------------------------------------------------------------------------------------------
# Encoding


@dataclass
class SplitFeatures:
    """Encoded split: unit-length features, ids and the caption -> video map.

    Attributes:
        video: ``{use_alpha: float32 [num_videos, D]}``: with the alpha channel (True) and/or without (False).
        text: float32 ``[num_captions, D]``.
        text_to_video: int64 ``[num_captions]``.
        video_ids: ``[num_videos]`` ids, in manifest order.
        captions: ``[num_captions]`` texts, in video order.
    """

    video: Dict[bool, np.ndarray]
    text: np.ndarray
    text_to_video: np.ndarray
    video_ids: List[str]
    captions: List[str]

    @property
    def protocol(self) -> str:
        """``square`` when every video has exactly one caption, else ``multi``."""
        one_each = len(self.captions) == len(self.video_ids) and np.array_equal(
            self.text_to_video, np.arange(len(self.video_ids)))
        return "square" if one_each else "multi"


def resolve_device(device: Optional[str]) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU; otherwise the named device."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise EnvError(f"--device {device}: CUDA is not available here; use --device cpu")
    return torch.device(device)


def _bar(total: int, desc: str, unit: str, progress: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                disable=None if progress else True)


def iter_video_features(model: Any, info: SplitInfo, *, variants: Sequence[bool] = (True,), batch_size: int = 32,
                        device: Any = "cpu", workers: int = 0,
                        progress: bool = True) -> Iterator[Tuple[Dict[bool, np.ndarray], List[str], List[List[str]]]]:
    """Encode a split's videos batch by batch, once per ``use_alpha`` variant, decoding the shards once.

    Args:
        model: a :class:`fda.model.VideoAlphaCLIP` (its ``use_alpha`` is restored afterwards).
        info: the split.
        variants: ``use_alpha`` values to encode with (True: frame-difference alpha; False: plain CLIP meanP).
        batch_size: clips per forward pass.
        device: where the model runs.
        workers: JPEG/PNG decoding threads.
        progress: show a progress bar (on a TTY).

    Yields:
        ``({use_alpha: float32 [B, D] unit length}, video ids [B], captions per video [B])``.
    """
    from fda.model.transforms import shard_batch_to_inputs

    saved = model.use_alpha
    autocast = torch.autocast("cuda", dtype=torch.float16) if torch.device(device).type == "cuda" else nullcontext()
    try:
        with logging_redirect_tqdm(), _bar(info.videos, f"encode {info.split} videos", "video", progress) as bar:
            for batch in iter_split_batches(info, batch_size, workers=workers):
                frames = np.stack([s["frames"] for s in batch])  # [B, T, H, W, 3] uint8
                masks = np.stack([s["masks"] for s in batch])  # [B, T, H, W] uint8
                images, alphas = shard_batch_to_inputs(frames, masks, model.image_size, device=device)
                feats: Dict[bool, np.ndarray] = {}
                for variant in variants:
                    model.use_alpha = variant
                    with torch.inference_mode(), autocast:
                        out = model.encode_video(images, alphas if variant else None)  # [B, D] unit length
                    feats[variant] = F.normalize(out.float(), dim=-1).cpu().numpy()
                model.use_alpha = saved
                yield (feats, [str(s["meta"].get("video_id", s["key"])) for s in batch],
                       [list(s["captions"]) for s in batch])
                bar.update(len(batch))
    finally:
        model.use_alpha = saved


def encode_videos(model: Any, info: SplitInfo, *, variants: Sequence[bool] = (True,), batch_size: int = 32,
                  device: Any = "cpu", workers: int = 0,
                  progress: bool = True) -> Tuple[Dict[bool, np.ndarray], List[str], List[List[str]]]:
    """Every video of a split (see :func:`iter_video_features`), collected.

    Returns:
        ``({use_alpha: float32 [num_videos, D]}, video ids, captions per video)``.

    Raises:
        InputError: fewer videos than the manifest lists, or any error of :func:`iter_split_batches`.
    """
    out: Dict[bool, List[np.ndarray]] = {v: [] for v in variants}
    ids: List[str] = []
    captions: List[List[str]] = []
    stream = iter_video_features(model, info, variants=variants, batch_size=batch_size, device=device,
                                 workers=workers, progress=progress)
    for feats, batch_ids, batch_captions in stream:
        for v in variants:
            out[v].append(feats[v])
        ids += batch_ids
        captions += batch_captions
    if len(ids) != info.videos:
        raise InputError(f"split {info.split}: read {len(ids)} videos, the manifest says {info.videos}: rerun fda "
                         f"preprocess")
    return {v: np.concatenate(f) for v, f in out.items()}, ids, captions


@torch.inference_mode()
def encode_texts(model: Any, captions: Sequence[str], *, tokenizer: Any = None, batch_size: int = 256,
                 device: Any = "cpu", progress: bool = True) -> np.ndarray:
    """Encode captions to unit-length float32 ``[N, D]``.

    Args:
        model: the model (``encode_text`` returns unnormalised features; they are normalised here).
        captions: the texts.
        tokenizer: ``tokenizer(list[str]) -> int64 [N, L]``; default: the model's.
        batch_size: captions per forward pass.
        device: where the model runs.
        progress: show a progress bar (on a TTY).
    """
    if tokenizer is None:
        from fda.model import get_tokenizer

        tokenizer = get_tokenizer(model.context_length)
    chunks = []
    autocast = torch.autocast("cuda", dtype=torch.float16) if torch.device(device).type == "cuda" else nullcontext()
    with logging_redirect_tqdm(), _bar(len(captions), "encode captions", "caption", progress) as bar:
        for start in range(0, len(captions), batch_size):
            part = list(captions[start:start + batch_size])
            tokens = tokenizer(part).to(device)  # [n, L] int64
            with autocast:
                feats = model.encode_text(tokens)  # [n, D] unnormalised
            chunks.append(F.normalize(feats.float(), dim=-1).cpu().numpy())
            bar.update(len(part))
    dim = int(getattr(model, "embed_dim", 0))
    return np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)


def encode_split(model: Any, info: SplitInfo, *, variants: Sequence[bool] = (True,), batch_size: int = 32,
                 text_batch_size: int = 256, device: Any = "cpu", workers: int = 0, tokenizer: Any = None,
                 progress: bool = True) -> SplitFeatures:
    """Encode a split's videos (per variant) and all its captions, in video order.

    Returns:
        The split's :class:`SplitFeatures`.
    """
    videos, ids, per_video = encode_videos(model, info, variants=variants, batch_size=batch_size, device=device,
                                           workers=workers, progress=progress)
    flat = [c for caps in per_video for c in caps]
    text_to_video = np.repeat(np.arange(len(ids), dtype=np.int64), [len(c) for c in per_video])
    empty = [ids[i] for i, c in enumerate(per_video) if not c]
    if empty:
        raise InputError(f"split {info.split}: video {empty[0]} has no caption ({len(empty)} such): rerun fda "
                         f"preprocess (it skips caption-less videos)")
    text = encode_texts(model, flat, tokenizer=tokenizer, batch_size=text_batch_size, device=device,
                        progress=progress)
    return SplitFeatures(videos, text, text_to_video, ids, flat)


# --------------------------------------------------------------------------------------------------------------
# Metrics


def logit_scale_of(model: Any) -> float:
    """``logit_scale.exp()`` of a CLIP model (the multiplier of cosine similarities)."""
    return float(model.logit_scale.detach().float().exp().cpu())


def feature_metrics(features: SplitFeatures, variant: bool, *, scale: float, dsl: bool) -> Dict[str, Any]:
    """Metrics of one variant: ``{"t2v", "v2t"}`` plus ``{"dsl": {"t2v", "v2t"}}`` when ``dsl``."""
    t2v = None if features.protocol == "square" else features.text_to_video
    video, text = features.video[variant], features.text
    out: Dict[str, Any] = embedding_retrieval_metrics(text, video, t2v, scale=scale)
    if dsl:
        if len(text) * len(video) <= DENSE_LIMIT:
            sim = (text @ video.T) * np.float32(scale)  # [captions, videos], CLIP4Clip's logit_scale * cosine
            out["dsl"] = dsl_retrieval_metrics(sim, t2v)
        else:
            out["dsl"] = embedding_retrieval_metrics(text, video, t2v, scale=scale, dsl=True)
    return out


def evaluate_split(model: Any, shards_dir: str, split: str, *, batch_size: int = 32, text_batch_size: int = 256,
                   device: Any = "cpu", frames: Optional[int] = None, dsl: bool = False, baseline: bool = False,
                   workers: int = 0, tokenizer: Any = None, progress: bool = False) -> Dict[str, Any]:
    """Evaluate an already-built model on one split of a shard set (the trainer's validation hook).

    The model is put in eval mode and restored to its previous mode afterwards.

    Args:
        model: a :class:`fda.model.VideoAlphaCLIP` on ``device``.
        shards_dir: the shard set.
        split: ``train``, ``val`` or ``test``.
        batch_size: clips per forward pass.
        text_batch_size: captions per forward pass.
        device: where the model runs.
        frames: frames per clip the caller expects; ``None`` takes what the shards hold.
        dsl: also compute dual-softmax numbers (``result["model"]["dsl"]``).
        baseline: also evaluate without the alpha channel (``result["baseline"]``).
        workers: decoding threads.
        tokenizer: default: the model's.
        progress: show progress bars.

    Returns:
        ``{"split", "videos", "captions", "protocol", "logit_scale", "model": {"t2v", "v2t"[, "dsl"]},
        ["baseline": {...}]}``; see :func:`flat_metrics` for ``eval/t2v_R@1``-style keys.

    Raises:
        InputError: no such split, corrupt shards, another frame count than ``frames``.
    """
    info = open_split(shards_dir, split, frames)
    variants = [bool(model.use_alpha)] + ([False] if baseline and model.use_alpha else [])
    was_training = model.training
    model.eval()
    try:
        features = encode_split(model, info, variants=variants, batch_size=batch_size,
                                text_batch_size=text_batch_size, device=device, workers=workers,
                                tokenizer=tokenizer, progress=progress)
    finally:
        model.train(was_training)
    return metrics_report(features, split, scale=logit_scale_of(model), dsl=dsl, main=variants[0],
                          baseline=baseline)


def metrics_report(features: SplitFeatures, split: str, *, scale: float, dsl: bool, main: bool,
                   baseline: bool) -> Dict[str, Any]:
    """The metrics part of a report from encoded features (see :func:`evaluate_split`)."""
    result: Dict[str, Any] = {"split": split, "videos": len(features.video_ids), "captions": len(features.captions),
                              "protocol": features.protocol, "logit_scale": scale,
                              "model": feature_metrics(features, main, scale=scale, dsl=dsl)}
    if baseline:
        result["baseline"] = feature_metrics(features, False, scale=scale, dsl=dsl)
        result["difference"] = _difference(result["model"], result["baseline"])
    return result


def _difference(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {d: {k: a[d][k] - b[d][k] for k in METRIC_KEYS} for d in DIRECTIONS}
    if "dsl" in a and "dsl" in b:
        out["dsl"] = _difference(a["dsl"], b["dsl"])
    return out


def flat_metrics(result: Dict[str, Any], prefix: str = "eval/") -> Dict[str, float]:
    """``{"eval/t2v_R@1": ..., "eval/v2t_MnR": ..., "eval/dsl_t2v_R@1": ...}`` from :func:`evaluate_split`."""
    out: Dict[str, float] = {}
    for name, block in (("", result["model"]), ("baseline_", result.get("baseline"))):
        if not block:
            continue
        for tag, metrics in (("", block), ("dsl_", block.get("dsl"))):
            if metrics:
                for d in DIRECTIONS:
                    for k in METRIC_KEYS:
                        out[f"{prefix}{name}{tag}{d}_{k}"] = float(metrics[d][k])
    return out


def validate(model: Any, shards_dir: str, split: str, device: Any) -> Dict[str, float]:
    """The trainer's validation callback (``fda.train.run.Validate``): ``{"eval/t2v_R@1": ..., ...}``.

    Args:
        model: the model being trained (a DDP wrapper is unwrapped).
        shards_dir: the shard set.
        split: the validation split.
        device: where the model lives.
    """
    model = getattr(model, "module", model)
    return flat_metrics(evaluate_split(model, shards_dir, split, device=device, progress=False))


def open_split(shards_dir: str, split: str, frames: Optional[int]) -> SplitInfo:
    """:func:`load_split` plus the frame-count check.

    Raises:
        InputError: as :func:`load_split`, or the split holds another number of frames per clip than ``frames``.
    """
    info = load_split(shards_dir, split)
    if frames is not None and info.frames and info.frames != frames:
        option = "--frames-train" if split == "train" else "--frames-test"
        raise InputError(f"shards in {shards_dir!r} hold {info.frames} frames per {split} clip, --frames is {frames}: "
                         f"pass --frames {info.frames} (or leave it out) or rerun fda preprocess with {option} "
                         f"{frames}")
    return info


DEFAULT_SHARDS = "shards"


def resolve_shards(shards: Optional[str], source: Dict[str, Any]) -> str:
    """The shard set to read: ``shards`` when given, else the one the run (or checkpoint) trained on, else ./shards.

    The run's shard set comes from its ``train_config.json`` (beside ``checkpoints/``).

    Raises:
        InputError: the run records a shard set that no longer exists.
    """
    if shards:
        return shards
    run_dir = source.get("run_dir")
    if not run_dir and source.get("checkpoint"):
        run_dir = os.path.dirname(os.path.dirname(os.path.abspath(source["checkpoint"])))
    config = os.path.join(run_dir, "train_config.json") if run_dir else ""
    if not config or not os.path.isfile(config):
        return DEFAULT_SHARDS
    try:
        with open(config, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return DEFAULT_SHARDS
    recorded = [p for p in ((doc.get("shards") or {}).get("dir"), doc.get("shards_dir")) if isinstance(p, str)]
    for path in recorded:
        if os.path.isdir(path):
            logger.info("shards: %s (recorded in %s)", path, config)
            return path
    if recorded:
        raise InputError(f"the run in {run_dir!r} trained on shards {recorded[0]!r}, which do not exist here: pass "
                         f"--shards DIR")
    return DEFAULT_SHARDS


# --------------------------------------------------------------------------------------------------------------
# fda eval: model resolution, feature cache, report


@dataclass
class EvalResult:
    """What ``fda eval`` produced: the report (as written) and where it went."""

    report: Dict[str, Any]
    report_path: str
    cached: bool

    def table(self) -> str:
        """The terminal table."""
        return render_table(self.report)


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _newest_run(runs_dir: str) -> str:
    if not os.path.isdir(runs_dir):
        raise InputError(f"no runs folder {runs_dir!r}: train first (fda train), or pass --checkpoint FILE or "
                         f"--model NAME [--pretrained ...]")
    runs = [os.path.join(runs_dir, d) for d in os.listdir(runs_dir) if os.path.isdir(os.path.join(runs_dir, d))]
    runs = [r for r in runs if _find_checkpoint(r) is not None]
    if not runs:
        raise InputError(f"no run with a checkpoint under {runs_dir!r}: train first, or pass --checkpoint FILE")

    def started(run: str) -> float:  # train_config.json is written once at the start; eval reports touch the folder
        config = os.path.join(run, "train_config.json")
        return os.path.getmtime(config if os.path.isfile(config) else run)

    return max(runs, key=started)


def _find_checkpoint(run_dir: str) -> Optional[str]:
    """A run's best checkpoint: ``checkpoints/best.pt`` (or ``best.pt``), else the newest ``.pt`` in the run."""
    for name in CHECKPOINT_NAMES:
        path = os.path.join(run_dir, name)
        if os.path.isfile(path):
            return path
    found = []
    for root, _, files in os.walk(run_dir):
        found += [os.path.join(root, f) for f in files if f.endswith(".pt")]
    return max(found, key=os.path.getmtime) if found else None


def resolve_model_source(cfg: EvalConfig) -> Dict[str, Any]:
    """Which model ``fda eval`` evaluates: ``{"kind": "checkpoint"|"model", "checkpoint", "run_dir", ...}``.

    Raises:
        InputError: no run, no checkpoint in the run, or a missing file.
    """
    if cfg.model or cfg.pretrained:
        return {"kind": "model", "model": cfg.model, "pretrained": cfg.pretrained,
                "alpha_checkpoint": cfg.alpha_checkpoint, "run_dir": None, "checkpoint": None}
    if cfg.checkpoint:
        if not os.path.isfile(cfg.checkpoint):
            raise InputError(f"--checkpoint file not found: {cfg.checkpoint}")
        return {"kind": "checkpoint", "checkpoint": cfg.checkpoint, "run_dir": cfg.run}
    run_dir = cfg.run or _newest_run(cfg.runs_dir)
    if not os.path.isdir(run_dir):
        raise InputError(f"--run folder not found: {run_dir}")
    checkpoint = _find_checkpoint(run_dir)
    if checkpoint is None:
        raise InputError(f"run {run_dir!r} has no checkpoint (.pt): train it first or pass --checkpoint FILE")
    return {"kind": "checkpoint", "checkpoint": checkpoint, "run_dir": run_dir}


def load_model(source: Dict[str, Any], device: torch.device, seed: int = 0) -> Tuple[Any, Dict[str, Any]]:
    """Build the model a source names; returns ``(model, identity)`` where identity keys the feature cache.

    A model without weights (``--model fda-tiny`` alone) is initialised from ``seed`` without touching the global
    RNG, so its numbers are reproducible.

    Raises:
        InputError: the checkpoint is not an fda checkpoint or does not fit its config.
        ConfigError: an unknown model name or tag.
    """
    if source["kind"] == "checkpoint":
        from fda.model.checkpoint import load_checkpoint

        model, ckpt = load_checkpoint(source["checkpoint"], device=device)
        identity = {"checkpoint": os.path.abspath(source["checkpoint"]),
                    "checkpoint_sha256": _sha256_file(source["checkpoint"]), "step": ckpt.get("step")}
        return model, identity
    from fda.model import load_alpha_clip

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, _ = load_alpha_clip(source["model"], source["pretrained"], source["alpha_checkpoint"], device=device)
    identity: Dict[str, Any] = {"model": model.name, "pretrained": source["pretrained"],
                                "alpha_checkpoint": source["alpha_checkpoint"], "seed": seed}
    for key in ("pretrained", "alpha_checkpoint"):
        if source[key] and os.path.isfile(source[key]):
            identity[f"{key}_sha256"] = _sha256_file(source[key])
    return model, identity


def describe_source(source: Dict[str, Any], identity: Dict[str, Any]) -> str:
    """``checkpoint X (step N)`` or ``model M (weights W)`` for log lines."""
    if source.get("checkpoint"):
        step = identity.get("step")
        return f"checkpoint {source['checkpoint']}" + (f" (step {step})" if step is not None else "")
    return f"model {source.get('model') or '?'} (weights {source.get('pretrained') or 'none: random init'})"


def _out_dir(cfg: EvalConfig, source: Dict[str, Any]) -> str:
    if cfg.out:
        return cfg.out
    if source.get("run_dir"):
        return source["run_dir"]
    if source.get("checkpoint"):
        return os.path.dirname(os.path.abspath(source["checkpoint"]))
    name = str(source.get("model") or "model").replace("/", "-")
    tag = os.path.splitext(os.path.basename(str(source["pretrained"])))[0] if source.get("pretrained") else "init"
    return os.path.join(cfg.runs_dir, f"eval-{name}-{tag}")


def _cache_key(identity: Dict[str, Any], manifest_sha: str, split: str, frames: int) -> str:
    doc = json.dumps({"identity": identity, "manifest": manifest_sha, "split": split, "frames": frames,
                      "fda_version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()[:24]


def _load_cache(path: str, variants: Sequence[bool]) -> Optional[SplitFeatures]:
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            video = {v: z[f"video_{int(v)}"] for v in variants if f"video_{int(v)}" in z.files}
            if len(video) != len(variants):
                return None
            meta = json.loads(str(z["meta"]))
            return SplitFeatures(video, z["text"], z["text_to_video"], meta["video_ids"], meta["captions"])
    except (OSError, ValueError, KeyError) as err:
        logger.warning("ignoring unreadable feature cache %s (%s)", path, err)
        return None


def _save_cache(path: str, features: SplitFeatures) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.npz"
    arrays = {f"video_{int(v)}": a for v, a in features.video.items()}
    meta = json.dumps({"video_ids": features.video_ids, "captions": features.captions}, ensure_ascii=False)
    np.savez(tmp, text=features.text, text_to_video=features.text_to_video, meta=np.array(meta), **arrays)
    os.replace(tmp, path)


def run_eval(cfg: EvalConfig) -> EvalResult:
    """Run ``fda eval``: resolve the model, encode (or load cached features), rank, write the JSON report.

    Raises:
        ConfigError: inconsistent options.
        InputError: missing run/checkpoint/shards/split, corrupt shards, a checkpoint that does not fit, another
            frame count in the shards than ``--frames``.
        EnvError: a device that is not there.
    """
    start = time.perf_counter()
    source = resolve_model_source(cfg)
    shards = resolve_shards(cfg.shards, source)
    info = open_split(shards, cfg.split, cfg.frames)
    with open(os.path.join(shards, MANIFEST), "rb") as f:
        manifest_sha = hashlib.sha256(f.read()).hexdigest()
    device = resolve_device(cfg.device)
    model, identity = load_model(source, device, cfg.seed)
    logger.info("evaluating %s on %s split %s (%d videos, %d frames per clip)", describe_source(source, identity),
                shards, cfg.split, info.videos, info.frames)
    main = bool(model.use_alpha)
    variants = [main] + ([False] if cfg.baseline and main else [])
    out_dir = _out_dir(cfg, source)
    cache_path = os.path.join(out_dir, "features",
                              f"{cfg.split}-{_cache_key(identity, manifest_sha, cfg.split, info.frames)}.npz")
    features = _load_cache(cache_path, variants) if cfg.cache else None
    cached = features is not None
    if cached:
        logger.info("features from cache %s", cache_path)
    else:
        features = encode_split(model, info, variants=variants, batch_size=cfg.batch_size,
                                text_batch_size=cfg.text_batch_size, device=device, workers=cfg.workers,
                                progress=True)
        if cfg.cache:
            _save_cache(cache_path, features)
    if len(features.video_ids) != info.videos or len(features.captions) != info.captions:
        raise InputError(f"split {cfg.split}: evaluated {len(features.video_ids)} videos and {len(features.captions)} "
                         f"captions, the manifest says {info.videos} and {info.captions}: rerun fda preprocess")
    metrics = metrics_report(features, cfg.split, scale=logit_scale_of(model), dsl=cfg.dsl, main=main,
                             baseline=cfg.baseline)
    from fda.model import count_truncated

    report = {
        "fda_version": __version__,
        "split": cfg.split,
        "counts": {"videos": metrics["videos"], "captions": metrics["captions"]},
        "truncation": {"captions_truncated": count_truncated(features.captions, model.context_length),
                       "context_length": model.context_length,
                       "rule": "open_clip SimpleTokenizer: a caption whose BPE tokens + start/end exceed "
                               "context_length keeps its first context_length - 2 tokens and ends with EOT "
                               "(CLIP4Clip cuts the same way at max_words)"},
        "protocol": {"name": metrics["protocol"], "description": PROTOCOLS[metrics["protocol"]],
                     "ties": "square and V2T: every tied position counted (CLIP4Clip compute_metrics); multi-caption "
                             "T2V: a tie counts against the caption",
                     "median": "np.median (square, V2T); lower median (multi-caption T2V, torch.median)",
                     "dsl": "TS2-Net: T2V ranks sim*softmax(sim, axis=texts), V2T sim*softmax(sim, axis=videos); "
                            "transductive, reported separately" if cfg.dsl else None},
        "logit_scale": metrics["logit_scale"],
        "frames": info.frames,
        "model": {"name": model.name, "use_alpha": main, **identity},
        "source": source,
        "shards": {"dir": os.path.abspath(shards), "manifest_sha256": manifest_sha, "frames": info.frames,
                   "size": info.size,
                   "mask": shown_mask(info.config)},
        "metrics": {k: metrics[k] for k in ("model", "baseline", "difference") if k in metrics},
        "options": dataclasses.asdict(cfg),
        "features_cached": cached,
        "seconds": round(time.perf_counter() - start, 3),
    }
    os.makedirs(out_dir, exist_ok=True)
    report_path = os.path.join(out_dir, f"eval_{cfg.split}.json")
    write_json_atomic(report_path, report)
    return EvalResult(report, report_path, cached)


# --------------------------------------------------------------------------------------------------------------
# The terminal table


def _row(label: str, metrics: Dict[str, float], dsl: Optional[Dict[str, float]], signed: bool = False) -> str:
    fmt = "{:+7.2f}" if signed else "{:7.2f}"
    cells = " ".join(fmt.format(metrics[k]) for k in METRIC_KEYS)
    if dsl is not None:
        cells += "  |" + " ".join(fmt.format(dsl[k]) for k in METRIC_KEYS)
    return f"{label:<22}{cells}"


def render_table(report: Dict[str, Any]) -> str:
    """A plain-text table of a report: one block per direction; DSL in its own labelled columns."""
    m = report["metrics"]
    has_dsl = "dsl" in m["model"]
    main_label = "fda (alpha)" if report["model"]["use_alpha"] else "model (no alpha)"
    lines = [f"{report['split']} split: {report['counts']['videos']} videos, {report['counts']['captions']} captions; "
             f"{report['protocol']['description']}"]
    cut = report.get("truncation", {}).get("captions_truncated")
    if cut:
        lines.append(f"{cut} of {report['counts']['captions']} captions are longer than the model's "
                     f"{report['truncation']['context_length']}-token context and were cut to it")
    names = {"t2v": "Text-to-video", "v2t": "Video-to-text"}
    head = " ".join(f"{k:>7}" for k in METRIC_KEYS)
    for d in DIRECTIONS:
        lines.append("")
        header = f"{names[d]:<22}{head}"
        if has_dsl:
            header += "  |" + " ".join(f"{'DSL ' + k:>7}" for k in METRIC_KEYS)
        lines.append(header)
        rows = [(main_label, m["model"], False)]
        if "baseline" in m:
            rows += [("baseline (CLIP meanP)", m["baseline"], False), ("difference", m["difference"], True)]
        for label, block, signed in rows:
            lines.append(_row(label, block[d], block["dsl"][d] if has_dsl else None, signed))
    if has_dsl:
        lines.append("")
        lines.append("DSL = inference dual softmax (TS2-Net), transductive: not comparable with plain numbers.")
    return "\n".join(lines)
