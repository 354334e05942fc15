"""``fda eval``: evaluate a run, checkpoint or untrained model on one split; cache features, write a report, show it.

:func:`run_eval` resolves the model (a run's best checkpoint, a checkpoint file, or a model that was never trained;
:mod:`fda.eval.source`), encodes the split (:mod:`fda.eval.encoding`) or loads its cached features, ranks it
(:mod:`fda.eval.evaluate`), writes a JSON report beside the model and renders it as a table.
"""

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

import numpy as np

from fda import __version__
from fda.config import EvalConfig
from fda.errors import InputError
from fda.eval.encoding import SplitFeatures, encode_split, open_split
from fda.eval.evaluate import logit_scale_of, metrics_report
from fda.eval.metrics import DIRECTIONS, METRIC_KEYS
from fda.eval.source import checkpoint_selection, describe_source, load_model, resolve_shards
from fda.model.device import resolve_device
from fda.model.source import resolve
from fda.options import flat_fields
from fda.shards.location import recorded
from fda.shards.manifest import manifest_sha256
from fda.shards.schema import shown_mask, write_json_atomic

logger = logging.getLogger(__name__)

PROTOCOLS = {
    "square": "one caption per video: square matrix, ground truth on the diagonal (MSR-VTT 1k-A; one paragraph per "
              "video: ActivityNet, DiDeMo)",
    "multi": "several captions per video: T2V over every caption, V2T by each video's best caption (MSVD)",
}


@dataclass
class EvalResult:
    """What ``fda eval`` produced: the report (as written) and where it went."""

    report: Dict[str, Any]
    report_path: str
    cached: bool

    def table(self) -> str:
        """The terminal table."""
        return render_table(self.report)


def _out_dir(cfg: EvalConfig, source: Dict[str, Any]) -> str:
    if cfg.out:
        return cfg.out
    if source.get("run_dir"):
        return source["run_dir"]
    if source.get("checkpoint"):
        return os.path.dirname(os.path.abspath(source["checkpoint"]))
    name = str(source.get("model") or "model").replace("/", "-")
    tag = os.path.splitext(os.path.basename(str(source["pretrained"])))[0] if source.get("pretrained") else "init"
    return os.path.join(cfg.source.runs_dir, f"eval-{name}-{tag}")


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
    source = resolve(cfg.source)
    shards = resolve_shards(cfg.shards, source)
    info = open_split(shards, cfg.split, cfg.frames)
    manifest_sha = manifest_sha256(shards)
    device = resolve_device(cfg.device)
    model, identity = load_model(source, device, cfg.seed)
    logger.info("evaluating %s on %s split %s (%d videos, %d frames per clip)", describe_source(source, identity),
                shards, cfg.split, info.videos, info.frames)
    selection = checkpoint_selection(source)
    logger.info("checkpoint chosen on: %s", selection["text"])
    if selection["split"] == cfg.split:
        selection["warning"] = (f"the checkpoint was selected on {cfg.split}, the split being evaluated: these "
                                f"numbers are optimistically biased (select on a val split, or report the last "
                                f"checkpoint)")
        logger.warning("%s", selection["warning"])
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
        "checkpoint_selected_on": selection,
        "shards": {"dir": recorded(shards), "manifest_sha256": manifest_sha, "frames": info.frames,
                   "size": info.size,
                   "mask": shown_mask(info.config)},
        "metrics": {k: metrics[k] for k in ("model", "baseline", "difference") if k in metrics},
        "options": flat_fields(cfg),
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
    selection = report.get("checkpoint_selected_on")
    if selection:
        lines.append(f"checkpoint chosen on: {selection['text']}")
        if selection.get("warning"):
            lines.append(f"WARNING: {selection['warning']}")
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
