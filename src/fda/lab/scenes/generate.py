"""``fda generate``: a demo set or a benchmark set, by ``--kind``."""

from typing import Any, Dict

from fda.lab.scenes.bench import make_bench_set
from fda.lab.scenes.demo import make_msrvtt_demo


def run_generate(cfg: Any) -> Dict[str, Any]:
    """Run ``fda generate`` from a :class:`fda.lab.config.GenerateConfig`; returns the summary dict."""
    common = dict(n_train=cfg.train, n_test=cfg.test, seed=cfg.seed, size=cfg.dimensions, fps=cfg.frame_rate,
                  seconds=cfg.seconds)
    if cfg.kind == "demo":
        return make_msrvtt_demo(cfg.out_dir, **common)
    return make_bench_set(cfg.out_dir, cfg.kind, condition=cfg.condition, **common)
