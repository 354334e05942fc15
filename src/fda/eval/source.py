"""The shard set and the identity of the model an ``fda eval`` or ``fda embed`` reads.

Which model is :func:`fda.model.resolve`'s record (``{"kind": "checkpoint" | "model", ...}``, written into reports
and ``embeddings.json`` and read back by ``fda search``); :func:`fda.model.create` builds it. Runs are found through
:class:`fda.runs.RunDir`, the trainer's own layout.
"""

import logging
import os
from typing import Any, Dict, Optional, Tuple

import torch

from fda.errors import InputError
from fda.runs import RunDir
from fda.shards.location import exists
from fda.shards.schema import file_digest

logger = logging.getLogger(__name__)

DEFAULT_SHARDS = "shards"


def sha256_file(path: str) -> str:
    """The SHA-256 hex digest of a file (:func:`fda.shards.schema.file_digest`'s)."""
    return file_digest(path)["sha256"]


def resolve_shards(shards: Optional[str], source: Dict[str, Any]) -> str:
    """The shard set to read: ``shards`` when given, else the one the run (or checkpoint) trained on, else ./shards.

    The run's shard set comes from its ``train_config.json`` (beside ``checkpoints/``).

    Raises:
        InputError: the run records a shard set that no longer exists.
    """
    if shards:
        return shards
    if source.get("run_dir"):
        run = RunDir(source["run_dir"])
    elif source.get("checkpoint"):
        run = RunDir.of_checkpoint(source["checkpoint"])
    else:
        return DEFAULT_SHARDS
    doc = run.read_config()
    recorded = [p for p in ((doc.get("shards") or {}).get("dir"), doc.get("shards_dir")) if isinstance(p, str)]
    for path in recorded:
        if exists(path):
            logger.info("shards: %s (recorded in %s)", path, run.config)
            return path
    if recorded:
        raise InputError(f"the run in {run.path!r} trained on shards {recorded[0]!r}, which do not exist here: pass "
                         f"--shards DIR")
    return DEFAULT_SHARDS


def load_model(source: Dict[str, Any], device: torch.device, seed: int = 0) -> Tuple[Any, Dict[str, Any]]:
    """Build the model a source names; returns ``(model, identity)`` where identity keys the feature cache.

    A model without weights (``--model fda-tiny`` alone) is initialised from ``seed`` without touching the global
    RNG, so its numbers are reproducible.

    Raises:
        InputError: the checkpoint is not an fda checkpoint or does not fit its config.
        ConfigError: an unknown model name or tag.
    """
    from fda.model import create

    if source["kind"] == "checkpoint":
        model, ckpt = create(source, device)
        identity = {"checkpoint": os.path.abspath(source["checkpoint"]),
                    "checkpoint_sha256": sha256_file(source["checkpoint"]), "step": ckpt.get("step")}
        return model, identity
    model, _ = create(source, device, seed=seed)
    identity: Dict[str, Any] = {"model": model.name, "pretrained": source["pretrained"],
                                "alpha_checkpoint": source["alpha_checkpoint"], "seed": seed}
    for key in ("pretrained", "alpha_checkpoint"):
        if source[key] and os.path.isfile(source[key]):
            identity[f"{key}_sha256"] = sha256_file(source[key])
    return model, identity


def checkpoint_selection(source: Dict[str, Any]) -> Dict[str, Any]:
    """Which split chose the checkpoint a source names: ``{"split": "val" | "test" | ... | None, "text"}``.

    ``best.pt`` records the split that chose it (``selected_on``); one written before that was recorded is read as
    chosen on the run's recorded ``val_split``. A step checkpoint was chosen by no split.
    """
    if source.get("kind") != "checkpoint":
        return {"split": None, "text": "none: a model not trained here"}
    path = source["checkpoint"]
    try:
        meta = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - load_model has read it already; a file that mmap refuses is simply not described
        meta = {}
    split = meta.get("selected_on")
    if split is None and meta.get("val_metrics"):
        split = RunDir.of_checkpoint(path).read_config().get("val_split") or "a validation split (not recorded)"
    if split is not None:
        return {"split": split, "text": f"{split}: best validation R@1 (step {meta.get('step')})"}
    run = RunDir.of_checkpoint(path)
    latest = run.latest()
    last = latest is not None and os.path.abspath(latest) == os.path.abspath(path)
    return {"split": None, "text": f"none: {'last' if last else 'step'} checkpoint (step {meta.get('step')})"}


def describe_source(source: Dict[str, Any], identity: Dict[str, Any]) -> str:
    """``checkpoint X (step N)`` or ``model M (weights W)`` for log lines."""
    if source.get("checkpoint"):
        step = identity.get("step")
        return f"checkpoint {source['checkpoint']}" + (f" (step {step})" if step is not None else "")
    return f"model {source.get('model') or '?'} (weights {source.get('pretrained') or 'none: random init'})"
