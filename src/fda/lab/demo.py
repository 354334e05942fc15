"""``fda demo``: the method's effect on a controlled synthetic set, in a few minutes on a laptop CPU.

generate a benchmark scene set (``motion`` by default: twins that differ only in which object moves, captioned by
the mover; real H.264 clips in the MSR-VTT layout) -> preprocess (frames + frame-difference masks -> shards) ->
train the small model with masks and with ``--no-alpha``, once per seed -> rank the test split and report twin
accuracy and R@1 for both arms, with their spread over the seeds -> draw the masks the model saw.

It is :func:`fda.lab.motion_bench.run_set` with two arms and one set: the same library calls as ``fda generate``,
``fda preprocess``, ``fda train`` and ``fda eval``; nothing here is demo-only except the small defaults.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from fda.files import make_out_dir
from fda.lab.config import DemoConfig

log = logging.getLogger(__name__)


@dataclass
class DemoResult:
    """Where everything went, and the lines to show."""

    out: str
    lines: List[str] = field(default_factory=list)
    rows: List[Dict[str, Any]] = field(default_factory=list)
    viz_index: Optional[str] = None


def run_demo(cfg: DemoConfig) -> DemoResult:
    """Run generate -> preprocess -> train (masks, no-alpha; per seed) -> twin accuracy and R@k under ``cfg.out``."""
    from fda.model.device import resolve_device
    from fda.lab.motion_bench import BenchMotionResult, prepare_set, run_set, set_dir
    from fda.shards.manifest import load_manifest

    scenes, budget = cfg.scenes, cfg.budget
    device = resolve_device(budget.train.device)  # a device that is not there fails before any work
    make_out_dir(cfg.out)
    bench = cfg.bench_config()
    result = DemoResult(cfg.out)
    prepared = prepare_set(bench, cfg.kind)
    shard_sets = prepared[0]
    manifest = load_manifest(shard_sets["masks"])
    counts = {s: v.get("videos", 0) for s, v in manifest.get("splits", {}).items()}
    result.lines.append(f"1/4 generate: {cfg.train_videos + cfg.test_videos} {cfg.kind} clips in twins "
                        f"({scenes.size}x{scenes.size}, {scenes.fps} fps) in "
                        f"{os.path.join(set_dir(bench, cfg.kind), 'data')}")
    result.lines.append(f"2/4 preprocess: {counts.get('train', 0)} train, {counts.get('test', 0)} test clips, "
                        f"{scenes.frames} frames and masks each, in {shard_sets['masks']}")
    rows, runs, scores = run_set(bench, cfg.kind, device, prepared)
    result.rows = rows
    result.lines.append(f"3/4 train: {budget.train.model}, {budget.steps} steps x batch {budget.train.batch_size}, "
                        f"with masks and with --no-alpha, seeds {budget.seeds} ({len(runs)} runs in "
                        f"{os.path.join(set_dir(bench, cfg.kind), 'runs')})")
    table = BenchMotionResult(cfg.out, rows=rows, masks={cfg.kind: scores}).table()
    result.lines.append(f"4/4 eval on the {counts.get('test', 0)} test clips (twin accuracy: a caption scores its "
                        f"own clip above its twin, chance 50 %):")
    result.lines.append(table)
    if cfg.visualize:
        from fda.lab.config import VisualizeConfig
        from fda.lab.viz import run_visualize

        viz = run_visualize(VisualizeConfig(shard_sets["masks"], out=os.path.join(cfg.out, "viz"), split="test",
                                            n=cfg.visualize))
        result.viz_index = viz.index
        result.lines.append(f"then visualize: {viz.summary()}")
    return result
