"""``fda demo``: the whole loop on a built-in synthetic data set, in a few minutes on a laptop CPU.

generate (MSR-VTT layout, real H.264 clips) -> preprocess (frames + frame-difference masks -> shards) -> train
(the tiny model, randomly initialised) -> eval (with the no-alpha baseline side by side). Each stage is the same
library call its own command makes; nothing here is demo-only except the small defaults.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from fda.config import DemoConfig, EvalConfig, GenerateConfig, PreprocessConfig, TrainConfig, make_out_dir

log = logging.getLogger(__name__)


@dataclass
class DemoResult:
    """Where everything went, and the lines to show."""

    out: str
    lines: List[str] = field(default_factory=list)
    report: Optional[Dict[str, Any]] = None
    viz_index: Optional[str] = None


def run_demo(cfg: DemoConfig, validate: Optional[Any] = None) -> DemoResult:
    """Run generate -> preprocess -> train -> eval under ``cfg.out``.

    Args:
        cfg: demo options.
        validate: periodic validation callback for the trainer (the CLI passes ``fda.eval``'s).
    """
    from fda.eval.retrieval import run_eval
    from fda.pipeline.preprocess import run_preprocess
    from fda.pipeline.synthetic import run_generate, summarize
    from fda.train.run import run_train

    make_out_dir(cfg.out)
    result = DemoResult(cfg.out)
    data, shards, runs = (os.path.join(cfg.out, name) for name in ("data", "shards", "runs"))
    # 4 fps and 112 px by default: the synthetic objects then move a few pixels between adjacent frames, enough for
    # tau 25 masks to survive the 3x3 morphology (at 10 fps and 64 px most frames fall back to the full mask).
    gen = GenerateConfig(out_dir=data, kind=cfg.kind, train=cfg.train_videos, test=cfg.test_videos, seed=cfg.seed,
                         fps=cfg.fps)
    result.lines.append("1/4 generate: " + summarize(run_generate(gen)))
    pre = run_preprocess(PreprocessConfig(dataset_root=data, out=shards, size=cfg.size, overwrite=True,
                                          samples_per_shard=max(1, cfg.train_videos // 2)))
    result.lines.append("2/4 preprocess: " + pre.summary())
    train_cfg = TrainConfig(shards_dir=shards, out=os.path.join(runs, "demo"), model=cfg.model,
                            pretrained=cfg.pretrained, batch_size=cfg.batch_size, max_steps=cfg.steps, lr=cfg.lr,
                            alpha_lr=cfg.alpha_lr, warmup_steps=max(1, cfg.steps // 10), workers=cfg.workers,
                            seed=cfg.seed, save_every=cfg.steps, log_every=max(1, cfg.steps // 10),
                            val_split="none", device=cfg.device, resume=None, tensorboard=False,
                            weight_decay=0.0, shuffle_buffer=cfg.train_videos)
    trained = run_train(train_cfg, validate=validate)
    result.lines.append("3/4 train: " + trained.summary())
    ev = run_eval(EvalConfig(split="test", shards=shards, run=trained.run_dir, baseline=True, device=cfg.device,
                             workers=cfg.workers))
    result.report = ev.report
    result.lines.append(f"4/4 eval (report: {ev.report_path}):")
    result.lines.append(ev.table())
    if cfg.visualize:  # issue 6: the masks the model saw, as pictures
        from fda.config import VisualizeConfig
        from fda.viz import run_visualize

        viz = run_visualize(VisualizeConfig(shards, out=os.path.join(cfg.out, "viz"), split="test", n=cfg.visualize))
        result.viz_index = viz.index
        result.lines.append(f"then visualize: {viz.summary()}")
    return result
