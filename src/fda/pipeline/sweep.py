"""Several shard sets that differ only in the mask threshold tau, from one decode of each video.

A tau sweep needs one shard set per tau, and everything but the masks is the same in all of them: the sampled
frames, their partners (the adjacent decoded frame each is differenced with), the JPEG bytes. So each video is
decoded once, and only the mask step (:func:`fda.pipeline.masks.clip_masks`) runs once per tau. Every shard set is
exactly what ``fda preprocess --tau X`` writes (same tars byte for byte, same ``config.json``, a manifest from
:func:`fda.pipeline.preprocess.build_manifest`), so each can be resumed, trained on and evaluated like any other.

The work is :func:`fda.pipeline.preprocess.run_preprocess_multi` (which ``fda preprocess`` itself runs with one
config); ``tests/test_experiments.py`` checks the byte equality with ``fda preprocess --tau X``.
"""

import dataclasses
import time
from typing import List, Sequence

from fda.config import PreprocessConfig
from fda.pipeline.preprocess import PreprocessResult, run_preprocess_multi


@dataclasses.dataclass
class SweepShards:
    """The shard sets of a tau sweep."""

    results: List[PreprocessResult]
    seconds: float

    @property
    def outs(self) -> List[str]:
        """The shard folders, in the order of the configs."""
        return [r.out for r in self.results]


def preprocess_taus(cfgs: Sequence[PreprocessConfig]) -> SweepShards:
    """Write one shard set per config, decoding every video once (configs differ only in ``tau`` and ``out``).

    Raises:
        ConfigError: configs that differ in more than tau/out, or an ``out`` holding another configuration.
        InputError: no dataset, nothing succeeded, too many failures (as ``run_preprocess``).
        EnvError: the decoder cannot run here.
    """
    start = time.perf_counter()
    results = run_preprocess_multi(cfgs)
    return SweepShards(results, time.perf_counter() - start)
