"""The layout of a training run's folder, for the trainer that writes it and the evaluator that reads it.

A run folder holds::

    RUN_DIR/train_config.json             the resolved config (+ world size, steps, manifest summary, events)
    RUN_DIR/metrics.jsonl                 one line per step: train/* metrics (and eval/* when validated)
    RUN_DIR/tb/                           TensorBoard events (same keys)
    RUN_DIR/checkpoints/step-0000100.pt   the last --keep-last step checkpoints
    RUN_DIR/checkpoints/best.pt           the best by validation

The checkpoints' content is :mod:`fda.model.checkpoint`'s; this module only names and finds files (no torch), so
``fda.train`` and ``fda.eval``, which never import each other, share it.
"""

import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple

from fda.errors import InputError

CONFIG = "train_config.json"
METRICS = "metrics.jsonl"
TENSORBOARD = "tb"
CHECKPOINTS = "checkpoints"
BEST = "best.pt"
STEP_RE = re.compile(r"^step-(\d+)\.pt$")
EVAL_CHECKPOINTS = (os.path.join(CHECKPOINTS, BEST), BEST)
"""Where ``fda eval`` looks for a run's checkpoint first (a bare ``best.pt`` at the top also counts)."""


@dataclass(frozen=True)
class RunDir:
    """One run folder (it need not exist yet)."""

    path: str

    @classmethod
    def of_checkpoint(cls, checkpoint: str) -> "RunDir":
        """The run a checkpoint file belongs to (``RUN/checkpoints/x.pt`` -> ``RUN``)."""
        return cls(os.path.dirname(os.path.dirname(os.path.abspath(checkpoint))))

    @classmethod
    def new(cls, model: str, root: str = "runs") -> "RunDir":
        """A fresh folder name ``<root>/<date>-<time>-<model>`` that does not exist yet."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = os.path.join(root, f"{stamp}-{re.sub(r'[^A-Za-z0-9_-]+', '_', model)}")
        path, n = base, 1
        while os.path.exists(path):
            n += 1
            path = f"{base}-{n}"
        return cls(path)

    @property
    def config(self) -> str:
        """``train_config.json``."""
        return os.path.join(self.path, CONFIG)

    @property
    def metrics(self) -> str:
        """``metrics.jsonl``."""
        return os.path.join(self.path, METRICS)

    @property
    def tensorboard(self) -> str:
        """The TensorBoard event folder."""
        return os.path.join(self.path, TENSORBOARD)

    @property
    def best(self) -> str:
        """``checkpoints/best.pt``."""
        return os.path.join(self.path, CHECKPOINTS, BEST)

    def step_checkpoint(self, step: int) -> str:
        """``checkpoints/step-0000100.pt`` for step 100."""
        return os.path.join(self.path, CHECKPOINTS, f"step-{step:07d}.pt")

    def checkpoints(self) -> List[Tuple[int, str]]:
        """``(step, path)`` of the step checkpoints, oldest first."""
        folder = os.path.join(self.path, CHECKPOINTS)
        names = os.listdir(folder) if os.path.isdir(folder) else []
        found = [(int(m.group(1)), os.path.join(folder, name)) for name in names for m in [STEP_RE.match(name)] if m]
        return sorted(found)

    def latest(self) -> Optional[str]:
        """The newest step checkpoint, or None."""
        found = self.checkpoints()
        return found[-1][1] if found else None

    def prune(self, keep_last: int) -> List[str]:
        """Delete all but the newest ``keep_last`` step checkpoints (``best.pt`` stays); returns what went."""
        old = [path for _, path in self.checkpoints()[:-keep_last]] if keep_last > 0 else []
        for path in old:
            os.remove(path)
        return old

    def eval_checkpoint(self) -> Optional[str]:
        """The checkpoint to evaluate: ``checkpoints/best.pt`` (or ``best.pt``), else the newest ``.pt`` in the run."""
        for name in EVAL_CHECKPOINTS:
            path = os.path.join(self.path, name)
            if os.path.isfile(path):
                return path
        found = []
        for root, _, files in os.walk(self.path):
            found += [os.path.join(root, f) for f in files if f.endswith(".pt")]
        return max(found, key=os.path.getmtime) if found else None

    def started(self) -> float:
        """When the run started: ``train_config.json``'s time (written at the start; eval reports touch the folder)."""
        return os.path.getmtime(self.config if os.path.isfile(self.config) else self.path)

    def shards_config(self) -> Dict[str, Any]:
        """The preprocess config of the shard set the run trained on (``train_config.json``), or ``{}``."""
        shards = self.read_config().get("shards")
        config = shards.get("config") if isinstance(shards, dict) else None
        return config if isinstance(config, dict) else {}

    def read_config(self) -> Dict[str, Any]:
        """``train_config.json``, or ``{}`` when it is missing or unreadable."""
        try:
            with open(self.config, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}


def shard_changes(recorded: Dict[str, Any], now: Dict[str, Any], keys: Iterable[str]) -> List[str]:
    """``"tau 10.0 -> 25.0"`` for every preprocess option of ``keys`` (``fda.config.SAMPLE_FIELDS``) in which the
    shard set a run recorded differs from ``now`` (none when the run recorded no shard config: runs from before it
    was recorded)."""
    if not recorded:
        return []
    # A flag a record predates is off there: absent and False are the same setting.
    return [f"{k} {recorded.get(k)!r} -> {now.get(k)!r}" for k in keys
            if recorded.get(k) != now.get(k) and {recorded.get(k), now.get(k)} - {None, False}]


def resume_source(resume: Optional[str], run: RunDir) -> Optional[str]:
    """The checkpoint a run resumes from: ``resume`` (a file, or a run folder's newest), else ``run``'s newest.

    Raises:
        InputError: ``resume`` does not exist, or is a folder without step checkpoints.
    """
    if not resume:
        return run.latest()
    if os.path.isfile(resume):
        return resume
    if os.path.isdir(resume):
        latest = RunDir(resume).latest()
        if latest is None:
            raise InputError(f"--resume {resume}: no {CHECKPOINTS}/step-*.pt in it: pass a checkpoint file")
        return latest
    raise InputError(f"--resume {resume}: no such file or folder")


def newest_run(runs_dir: str) -> RunDir:
    """The most recently started run under ``runs_dir`` that has a checkpoint to evaluate.

    Raises:
        InputError: no such folder, or no run with a checkpoint in it.
    """
    if not os.path.isdir(runs_dir):
        raise InputError(f"no runs folder {runs_dir!r}: train first (fda train), or pass --checkpoint FILE or "
                         f"--model NAME [--pretrained ...]")
    runs = [RunDir(os.path.join(runs_dir, d)) for d in os.listdir(runs_dir) if os.path.isdir(os.path.join(runs_dir, d))]
    runs = [r for r in runs if r.eval_checkpoint() is not None]
    if not runs:
        raise InputError(f"no run with a checkpoint under {runs_dir!r}: train first, or pass --checkpoint FILE")
    return max(runs, key=RunDir.started)
