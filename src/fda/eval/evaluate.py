"""Retrieval metric runs: rank encoded features, evaluate a model on a split, flatten the numbers for logging.

:func:`evaluate_split` takes an already-built model and returns metrics for one split; :data:`validate` wraps it as
the trainer's periodic validation callback (the CLI passes it in, so ``fda.train`` never imports ``fda.eval``). A
split where every video has exactly one caption (MSR-VTT 1k-A) is ranked with the square protocol, any other with
the multi-caption protocol (MSVD), both as :mod:`fda.eval.metrics` documents.
"""

from dataclasses import dataclass
from typing import Any, Dict, Optional

import numpy as np

from fda.eval.encoding import SplitFeatures, encode_split, open_split
from fda.eval.metrics import (BEST_METRIC, DIRECTIONS, EVAL_PREFIX, METRIC_KEYS, dsl_retrieval_metrics,
                              embedding_retrieval_metrics, metric_name)

DENSE_LIMIT = 50_000_000  # matrix entries below which the dense DSL path is used (same numbers, less overhead)


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


def flat_metrics(result: Dict[str, Any], prefix: str = EVAL_PREFIX) -> Dict[str, float]:
    """``{"eval/t2v_R@1": ..., "eval/v2t_MnR": ..., "eval/dsl_t2v_R@1": ...}`` from :func:`evaluate_split`."""
    out: Dict[str, float] = {}
    for name, block in (("", result["model"]), ("baseline_", result.get("baseline"))):
        if not block:
            continue
        for tag, metrics in (("", block), ("dsl_", block.get("dsl"))):
            if metrics:
                for d in DIRECTIONS:
                    for k in METRIC_KEYS:
                        out[metric_name(d, k, prefix=prefix, variant=name + tag)] = float(metrics[d][k])
    return out


@dataclass(frozen=True)
class Validator:
    """The trainer's validation callback (``fda.train.run.Validate``): ``{"eval/t2v_R@1": ..., ...}``.

    Attributes:
        best_key: the returned number that picks the run's best checkpoint (higher is better).
    """

    best_key: str = BEST_METRIC

    def __call__(self, model: Any, shards_dir: str, split: str, device: Any) -> Dict[str, float]:
        """Evaluate ``model`` on one split; flat ``eval/*`` metrics (:func:`flat_metrics`).

        Args:
            model: the model being trained (a DDP wrapper is unwrapped).
            shards_dir: the shard set.
            split: the validation split.
            device: where the model lives.
        """
        model = getattr(model, "module", model)
        return flat_metrics(evaluate_split(model, shards_dir, split, device=device, progress=False))


validate = Validator()
"""The validation callback ``fda train`` passes to the trainer."""
