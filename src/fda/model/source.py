"""The one front door to a model: :func:`create` builds what a :class:`fda.config.ModelSource` names.

A source names a trained model (``checkpoint``, or a ``run`` folder, or by default the newest run under
``runs_dir``) or a model never trained here (``model`` with ``pretrained`` weights and an optional Alpha-CLIP
``alpha_checkpoint``). :func:`resolve` turns it into a plain record (written into eval reports and
``embeddings.json``, read back by ``fda search``): ``{"kind": "checkpoint", "checkpoint", "run_dir"}`` or
``{"kind": "model", "model", "pretrained", "alpha_checkpoint", "run_dir": None, "checkpoint": None}``; :func:`create`
takes either. ``fda train``, ``eval``, ``embed``, ``search`` and the lab build their models only here (like timm's
``create_model``).
"""

import os
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch

from fda.config import ModelSource
from fda.errors import InputError
from fda.runs import RunDir, newest_run


def effective_pretrained(pretrained: Optional[str], config: Dict[str, Any]) -> Optional[str]:
    """The weights a new run really starts from: None for ``none`` (any case), and for ``openai`` on a model without
    OpenAI weights (fda-tiny); otherwise ``pretrained``."""
    from fda.model.factory import normalize_pretrained

    pretrained = normalize_pretrained(pretrained)
    if pretrained == "openai" and not config.get("fda", {}).get("open_clip_name"):
        return None
    return pretrained


def resolve(source: ModelSource) -> Dict[str, Any]:
    """Which model ``source`` names: ``model``/``pretrained``, else ``checkpoint``, else a run's (``run`` or the
    newest under ``runs_dir``); the record of the module docstring.

    Raises:
        InputError: no run, no checkpoint in the run, or a missing file.
    """
    if source.model or source.pretrained:
        return {"kind": "model", "model": source.model, "pretrained": source.pretrained,
                "alpha_checkpoint": source.alpha_checkpoint, "run_dir": None, "checkpoint": None}
    if source.checkpoint:
        if not os.path.isfile(source.checkpoint):
            raise InputError(f"--checkpoint file not found: {source.checkpoint}")
        return {"kind": "checkpoint", "checkpoint": source.checkpoint, "run_dir": source.run}
    run = RunDir(source.run) if source.run else newest_run(source.runs_dir)
    if not os.path.isdir(run.path):
        raise InputError(f"--run folder not found: {run.path}")
    checkpoint = run.eval_checkpoint()
    if checkpoint is None:
        raise InputError(f"run {run.path!r} has no checkpoint (.pt): train it first or pass --checkpoint FILE")
    return {"kind": "checkpoint", "checkpoint": checkpoint, "run_dir": run.path}


def create(source: Union[ModelSource, Mapping[str, Any]], device: Union[str, torch.device] = "cpu", *,
           use_alpha: Optional[bool] = None, seed: Optional[int] = None) -> Tuple[Any, Dict[str, Any]]:
    """Build the model ``source`` names (a :class:`ModelSource`, or the record :func:`resolve` made of one).

    Args:
        source: what to build.
        device: where the model lives.
        use_alpha: for a model built from weights: the alpha path on or off (None: on; a checkpoint records its own).
        seed: for a model built from weights: initialise the weights it has no values for from this seed, without
            touching the global RNG (None: from the global RNG).

    Returns:
        ``(model, checkpoint)``: the :class:`fda.model.VideoAlphaCLIP` in eval mode, and the whole checkpoint dict
        it came from (``{}`` for a model built from weights).

    Raises:
        InputError: a missing run, checkpoint or weights file, or one that does not fit.
        ConfigError: an unknown model name or tag.
    """
    record = resolve(source) if isinstance(source, ModelSource) else source
    if record["kind"] == "checkpoint":
        from fda.model.checkpoint import load_checkpoint

        return load_checkpoint(record["checkpoint"], device=device)
    from fda.model.factory import load_alpha_clip

    def build() -> Any:
        return load_alpha_clip(record["model"], record["pretrained"], record["alpha_checkpoint"], device,
                               use_alpha=use_alpha)[0]

    if seed is None:
        return build(), {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(), {}
