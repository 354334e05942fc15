"""Testing the method: ``fda sweep`` (R@1 against the mask threshold tau) and ``fda ablate`` (masks vs no masks).

Both run the same library calls as their stage commands: shard sets from :func:`preprocess_taus` (one decode per
video for every tau), :func:`fda.train.run.run_train` with one budget and seed list for every arm, and
:func:`fda.eval.retrieval.run_eval` on one split. The no-mask arm is ``TrainConfig(no_alpha=True)``: plain CLIP
meanP trained with the same budget on the same frames (frames do not depend on tau, so a sweep trains it once).

Outputs per experiment folder: ``<name>.json`` (every run and the per-arm mean/std over seeds), ``<name>.csv``
(one row per arm), ``<name>.png`` (the figure), and the shard sets and runs they came from. Rerunning resumes: shard
sets and finished runs are reused. Only ``fda.cli`` imports this module (it joins train and eval, which must not
import each other).
"""

import csv
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from fda.config import SAMPLE_FIELDS, EvalConfig, ModelSource, PreprocessConfig
from fda.files import make_out_dir
from fda.lab.config import AblateConfig, Budget, SweepConfig
from fda.options import flat_fields, options_record
from fda.errors import ConfigError
from fda.eval.metrics import DIRECTIONS, METRIC_KEYS, metric_name
from fda.lab.viz import mask_stats, pyplot, save_figure
from fda.runs import RunDir, shard_changes
from fda.shards.manifest import read_manifest
from fda.shards.schema import write_json_atomic

log = logging.getLogger(__name__)

COLUMNS = [metric_name(d, k) for d in DIRECTIONS for k in METRIC_KEYS]


def _tag(tau: float) -> str:
    return f"tau_{tau:g}".replace(".", "p")


@dataclass
class SweepShards:
    """The shard sets of a tau sweep."""

    results: List[Any]  # fda.pipeline.preprocess.PreprocessResult, one per config
    seconds: float

    @property
    def outs(self) -> List[str]:
        """The shard folders, in the order of the configs."""
        return [r.out for r in self.results]


def preprocess_taus(cfgs: Sequence[PreprocessConfig]) -> SweepShards:
    """Write one shard set per config, decoding every video once (configs differ only in ``tau`` and ``out``).

    Every shard set is exactly what ``fda preprocess --tau X`` writes (same tars byte for byte, same
    ``config.json``), so each can be resumed, trained on and evaluated like any other.

    Raises:
        ConfigError: configs that differ in more than tau/out, or an ``out`` holding another configuration.
        InputError: no dataset, nothing succeeded, too many failures (as ``run_preprocess``).
        EnvError: the decoder cannot run here.
    """
    from fda.pipeline.preprocess import preprocess_shard_sets

    start = time.perf_counter()
    if not cfgs:
        raise ConfigError("--tau needs at least one value")
    first = {k: v for k, v in flat_fields(cfgs[0]).items() if k not in ("tau", "out")}
    for cfg in cfgs[1:]:
        other = {k: v for k, v in flat_fields(cfg).items() if k not in ("tau", "out")}
        if other != first:
            diff = sorted(k for k in first if first[k] != other[k])
            raise ConfigError(f"a tau sweep shares one decode, so only --tau and --out may differ; also differs: "
                              f"{', '.join(diff)}")
    results = preprocess_shard_sets(cfgs[0], [(c.out, c.mask) for c in cfgs])
    return SweepShards(results, time.perf_counter() - start)


def drop_stale_run(run_dir: str, shards_dir: str) -> bool:
    """Delete the run folder ``run_dir`` of an earlier experiment when its shard set has been preprocessed again
    with other options since (a rerun with changed mask options rewrites the shards; the run is then retrained, not
    resumed). Returns whether it was deleted."""
    if not os.path.isdir(run_dir):
        return False
    changed = shard_changes(RunDir(run_dir).shards_config(), (read_manifest(shards_dir) or {}).get("config") or {},
                            SAMPLE_FIELDS)
    if changed:
        log.warning("%s trained on shards made with other options (%s): training it again", run_dir,
                    "; ".join(changed))
        shutil.rmtree(run_dir)
    return bool(changed)


def train_and_eval(shards_dir: str, run_dir: str, budget: Budget, *, seed: int, no_alpha: bool, split: str,
                   eval_split: str) -> Dict[str, Any]:
    """Train one arm with ``budget`` and evaluate it on ``eval_split``.

    Args:
        shards_dir: the shard set.
        run_dir: the run folder (a finished run there is reused: the trainer resumes at its last step).
        budget: the experiment's training budget.
        seed: training seed.
        no_alpha: train the plain CLIP meanP baseline instead of Alpha-CLIP.
        split: training split.
        eval_split: evaluation split.

    Returns:
        ``{"run_dir", "seed", "no_alpha", "report", "t2v_R@1", ..., "v2t_MnR"}``.
    """
    from fda.eval.retrieval import run_eval
    from fda.train.run import run_train

    train_cfg = budget.run_config(shards_dir, run_dir, seed=seed, no_alpha=no_alpha, split=split)
    drop_stale_run(run_dir, shards_dir)
    trained = run_train(train_cfg)
    ev = run_eval(EvalConfig(split=eval_split, shards=shards_dir, source=ModelSource(run=trained.run_dir), frames=None,
                             batch_size=budget.eval_batch_size, workers=0, device=budget.train.device, cache=False,
                             out=trained.run_dir, seed=seed))
    metrics = ev.report["metrics"]["model"]
    row: Dict[str, Any] = {"run_dir": trained.run_dir, "seed": seed, "no_alpha": no_alpha, "steps": trained.steps,
                           "report": ev.report_path}
    row.update({metric_name(d, k): float(metrics[d][k]) for d in DIRECTIONS for k in METRIC_KEYS})
    log.info("%s: t2v R@1 %.2f, v2t R@1 %.2f", run_dir, row["t2v_R@1"], row["v2t_R@1"])
    return row


def summarize_runs(runs: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Mean and (population) std over seeds of every metric column, plus the seed count."""
    out: Dict[str, Any] = {"seeds": len(runs)}
    for col in COLUMNS:
        values = np.asarray([r[col] for r in runs], np.float64)
        out[col] = float(values.mean())
        out[col + "_std"] = float(values.std())
    return out


def difference_row(masked: Sequence[Dict[str, Any]], plain: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Mean and std over seeds of the per-seed differences ``masked - plain`` (runs matched by seed).

    The spread of a difference is the spread of the per-seed differences, not a difference of spreads.
    """
    by_seed = {r["seed"]: r for r in plain}
    diffs = [{c: r[c] - by_seed[r["seed"]][c] for c in COLUMNS} for r in masked]
    return {"arm": "difference", **summarize_runs(diffs)}


def _write_csv(path: str, rows: Sequence[Dict[str, Any]], first: Sequence[str]) -> None:
    cols = list(first) + ["seeds"] + [c for col in COLUMNS for c in (col, col + "_std")]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})


def _fmt(row: Dict[str, Any], col: str) -> str:
    std = row.get(col + "_std", 0.0)
    return f"{row[col]:6.2f}" + (f"±{std:<5.2f}" if row.get("seeds", 1) > 1 else "")


def render_rows(rows: Sequence[Dict[str, Any]], label: str) -> str:
    """A plain-text table: one line per arm, R@1/R@5/R@10/MdR both ways (mean±std over seeds when several)."""
    cols = [metric_name(d, k) for d in DIRECTIONS for k in ("R@1", "R@5", "R@10", "MdR")]
    width = 14 if any(r.get("seeds", 1) > 1 for r in rows) else 9
    lines = [f"{'':<24}" + "".join(f"{c:>{width}}" for c in cols)]
    for row in rows:
        lines.append(f"{row[label]:<24}" + "".join(f"{_fmt(row, c):>{width}}" for c in cols))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# fda sweep


@dataclass
class SweepResult:
    """Rows per tau (plus the no-mask baseline) and where the table and figure went."""

    out: str
    rows: List[Dict[str, Any]] = field(default_factory=list)
    baseline: Optional[Dict[str, Any]] = None
    json_path: str = ""
    csv_path: str = ""
    figure: str = ""

    def table(self) -> str:
        """The printed table."""
        rows = self.rows + ([self.baseline] if self.baseline else [])
        text = render_rows(rows, "arm")
        return text + "\n" + "\n".join(f"{r['arm']:<24}test masks: coverage {r['coverage_mean']:.3f}, full-mask "
                                       f"fallback {100 * r['fallback_share']:.1f}%" for r in self.rows)


def plot_sweep(rows: Sequence[Dict[str, Any]], baseline: Optional[Dict[str, Any]], path: str) -> None:
    """R@1 against tau, both directions (error bars: std over seeds), the no-mask baseline as horizontal lines."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    taus = [r["tau"] for r in rows]
    for d, colour, name in (("t2v", "tab:blue", "text-to-video"), ("v2t", "tab:orange", "video-to-text")):
        r1 = metric_name(d, "R@1")
        ax.errorbar(taus, [r[r1] for r in rows], yerr=[r[r1 + "_std"] for r in rows], marker="o",
                    color=colour, capsize=3, label=f"{name} R@1 (masks)")
        if baseline:
            ax.axhline(baseline[r1], color=colour, linestyle="--", linewidth=1.2,
                       label=f"{name} R@1, no mask (--no-alpha)")
    ax.set_xlabel("tau (grey levels)")
    ax.set_ylabel("R@1 (%)")
    ax.set_xticks(taus)
    ax.set_xticklabels([f"{t:g}" for t in taus])
    ax.set_title(f"tau sensitivity ({rows[0]['seeds']} seed(s) per point)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def run_sweep(cfg: SweepConfig) -> SweepResult:
    """Run ``fda sweep``: shard sets per tau (one decode), training per tau and seed, eval on test, table, figure.

    Raises:
        ConfigError, InputError, EnvError: from the stages (preprocess, train, eval), one line each.
    """
    from fda.model.device import resolve_device

    resolve_device(cfg.budget.train.device)  # a device that is not there fails before any work
    make_out_dir(cfg.out)
    pre_cfgs = [cfg.preprocess_config(tau, os.path.join(cfg.out, "shards", _tag(tau))) for tau in cfg.taus]
    shards = preprocess_taus(pre_cfgs)
    log.info("sweep shard sets: %s", ", ".join(shards.outs))
    result = SweepResult(cfg.out)
    runs: List[Dict[str, Any]] = []
    for tau, shards_dir in zip(cfg.taus, shards.outs):
        arm = [train_and_eval(shards_dir, os.path.join(cfg.out, "runs", f"{_tag(tau)}-seed{seed}"), cfg.budget,
                              seed=seed, no_alpha=False, split="train", eval_split="test")
               for seed in cfg.budget.seed_list]
        runs += [{**r, "tau": tau} for r in arm]
        stats = mask_stats(shards_dir, "test").as_dict()
        result.rows.append({"arm": f"tau {tau:g}", "tau": tau, "shards": shards_dir,
                            "coverage_mean": stats["coverage_mean"], "fallback_share": stats["fallback_share"],
                            **summarize_runs(arm)})
    if cfg.baseline:
        arm = [train_and_eval(shards.outs[0], os.path.join(cfg.out, "runs", f"no-alpha-seed{seed}"), cfg.budget,
                              seed=seed, no_alpha=True, split="train", eval_split="test")
               for seed in cfg.budget.seed_list]
        runs += [{**r, "tau": None} for r in arm]
        result.baseline = {"arm": "no mask (--no-alpha)", "tau": None, **summarize_runs(arm)}
    result.json_path = os.path.join(cfg.out, "sweep.json")
    result.csv_path = os.path.join(cfg.out, "sweep.csv")
    result.figure = os.path.join(cfg.out, "sweep.png")
    write_json_atomic(result.json_path, {"config": options_record(cfg), "rows": result.rows,
                                         "baseline": result.baseline, "runs": runs})
    _write_csv(result.csv_path, result.rows + ([result.baseline] if result.baseline else []),
               ["arm", "tau", "coverage_mean", "fallback_share"])
    plot_sweep(result.rows, result.baseline, result.figure)
    return result


# ----------------------------------------------------------------------------------------------------------------
# fda ablate


@dataclass
class AblateResult:
    """The two arms (masks, no masks) and where the table and figure went."""

    out: str
    rows: List[Dict[str, Any]] = field(default_factory=list)
    difference: Optional[Dict[str, Any]] = None
    mask_stats: Optional[Dict[str, Any]] = None
    json_path: str = ""
    csv_path: str = ""
    figure: str = ""

    def table(self) -> str:
        """The printed table, with the difference row (mean±std of the per-seed differences) and the masks' numbers."""
        rows = [*self.rows, self.difference] if self.difference else list(self.rows)
        text = render_rows(rows, "arm")
        if self.mask_stats:
            text += (f"\n{self.mask_stats['split']} masks: coverage {self.mask_stats['coverage_mean']:.3f}, "
                     f"full-mask fallback {100 * self.mask_stats['fallback_share']:.1f}% of frames")
        return text


def plot_ablation(rows: Sequence[Dict[str, Any]], path: str, title: str) -> None:
    """Grouped bars: R@1/R@5/R@10 both ways, masks vs no masks, std over seeds as error bars."""
    plt = pyplot()
    cols = [metric_name(d, k) for d in DIRECTIONS for k in ("R@1", "R@5", "R@10")]
    x = np.arange(len(cols))
    width = 0.38
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    for i, (row, colour) in enumerate(zip(rows, ("tab:red", "tab:gray"))):
        ax.bar(x + (i - 0.5) * width, [row[c] for c in cols], width, yerr=[row[c + "_std"] for c in cols],
               color=colour, capsize=3, label=row["arm"])
    ax.set_xticks(x)
    ax.set_xticklabels([c.replace("_", " ") for c in cols])
    ax.set_ylabel("recall (%)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def run_ablate(cfg: AblateConfig) -> AblateResult:
    """Run ``fda ablate``: train with masks and without (same budget, seeds, shards), evaluate both on one split.

    Raises:
        ConfigError, InputError, EnvError: from train and eval, one line each.
    """
    from fda.model.device import resolve_device

    resolve_device(cfg.budget.train.device)  # a device that is not there fails before any work
    make_out_dir(cfg.out)
    result = AblateResult(cfg.out)
    runs: List[Dict[str, Any]] = []
    for no_alpha, name, label in ((False, "alpha", "masks (Alpha-CLIP)"), (True, "no-alpha", "no mask (--no-alpha)")):
        arm = [train_and_eval(cfg.shards_dir, os.path.join(cfg.out, "runs", f"{name}-seed{seed}"), cfg.budget,
                              seed=seed, no_alpha=no_alpha, split=cfg.split, eval_split=cfg.eval_split)
               for seed in cfg.budget.seed_list]
        runs += arm
        result.rows.append({"arm": label, "no_alpha": no_alpha, **summarize_runs(arm)})
    result.difference = difference_row([r for r in runs if not r["no_alpha"]], [r for r in runs if r["no_alpha"]])
    result.mask_stats = mask_stats(cfg.shards_dir, cfg.eval_split).as_dict()
    result.json_path = os.path.join(cfg.out, "ablate.json")
    result.csv_path = os.path.join(cfg.out, "ablate.csv")
    result.figure = os.path.join(cfg.out, "ablate.png")
    write_json_atomic(result.json_path, {"config": options_record(cfg), "rows": result.rows,
                                         "difference": result.difference, "mask_stats": result.mask_stats,
                                         "runs": runs})
    _write_csv(result.csv_path, result.rows, ["arm", "no_alpha"])
    plot_ablation(result.rows, result.figure,
                  f"{os.path.basename(os.path.normpath(cfg.shards_dir))}: masks vs none "
                  f"({len(cfg.budget.seed_list)} seed(s))")
    return result
