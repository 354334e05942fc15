"""Self-describing fda checkpoints: config, version and weights in one file that ``weights_only`` loading reads.

A checkpoint is ``{"fda_version", "model_cfg", "use_alpha", "state_dict", **extra}``: ``model_cfg`` is the model's
config document (``{"name", "model_cfg": {open_clip schema}, "fda": {...}}``), ``state_dict`` is ``model.clip``'s
(open_clip naming plus ``visual.conv1_alpha.weight``), and ``extra`` is whatever the caller adds (the trainer:
``train_cfg``, ``optimizer``, ``step``, ``scheduler``, ``rng``). Everything is plain Python types and tensors, so
``torch.load(path, weights_only=True)`` reads it and :func:`load_checkpoint` rebuilds the model from the file alone.
``fda.model.load_alpha_clip(pretrained=path)`` reads the same files.
"""

import logging
import os
from typing import Any, Dict, Tuple, Union

import torch

from fda import __version__
from fda.errors import InputError
from fda.model.factory import build_model
from fda.model.video_clip import VideoAlphaCLIP
from fda.model.weights import load_clip_weights, read_weights

log = logging.getLogger(__name__)

RESERVED_KEYS = ("fda_version", "model_cfg", "use_alpha", "state_dict")
_PLAIN = (str, int, float, bool, type(None), torch.Tensor, torch.Size, torch.dtype, torch.device)


def _check_plain(obj: Any, where: str) -> None:
    """Raise TypeError naming the first value that ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(obj, _PLAIN):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool, type(None))):
                raise TypeError(f"{where} has a key of type {type(k).__name__}; checkpoints take plain types")
            _check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__name__}; checkpoints take plain types and "
                    f"tensors (torch.load(weights_only=True)): convert it (list, dict, torch.tensor)")


def save_checkpoint(path: str, model: VideoAlphaCLIP, **extra: Any) -> None:
    """Write a self-describing checkpoint atomically (temporary file, then ``os.replace``).

    Args:
        path: the file to write; its folder is created.
        model: the model to save.
        **extra: more plain-typed entries (``train_cfg``, ``optimizer``, ``step``, ...).

    Raises:
        ValueError: ``extra`` reuses a reserved key (``fda_version``, ``model_cfg``, ``use_alpha``, ``state_dict``).
        TypeError: an entry is not a plain type or tensor; the message names it.
    """
    clash = sorted(set(extra) & set(RESERVED_KEYS))
    if clash:
        raise ValueError(f"save_checkpoint: {', '.join(clash)} are written by fda itself")
    ckpt: Dict[str, Any] = {
        "fda_version": __version__,
        "model_cfg": model.model_cfg,
        "use_alpha": bool(model.use_alpha),
        "state_dict": {k: v.detach().cpu() for k, v in model.clip.state_dict().items()},
        **extra,
    }
    _check_plain(ckpt, "checkpoint")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    log.debug("saved checkpoint %s", path)


def load_checkpoint(path: str, device: Union[str, torch.device] = "cpu") -> Tuple[VideoAlphaCLIP, Dict[str, Any]]:
    """Rebuild a model from an fda checkpoint alone.

    Args:
        path: a file written by :func:`save_checkpoint`.
        device: where the model lives.

    Returns:
        ``(model in eval mode with the recorded use_alpha, the whole checkpoint dict)``; tensors in the dict are on
        the CPU.

    Raises:
        InputError: the file is missing, is not an fda checkpoint, or its weights do not fit its config.
    """
    if not os.path.isfile(path):
        raise InputError(f"checkpoint file not found: {path}")
    try:
        weights = read_weights(path)
    except InputError as err:
        cause = str(err)[len(path) + 2:] if str(err).startswith(f"{path}: ") else str(err)
        raise InputError(f"{path} is not an fda checkpoint: {cause}") from None
    if weights.kind != "fda":
        raise InputError(f"{path} is not an fda checkpoint (it looks like a {weights.kind} file): load it with "
                         f"load_alpha_clip(pretrained=...)")
    ckpt = weights.meta
    if ckpt.get("fda_version") != __version__:
        log.info("%s was written by fda %s (this is %s)", path, ckpt.get("fda_version"), __version__)
    model = build_model(ckpt["model_cfg"], use_alpha=bool(ckpt.get("use_alpha", True)))
    load_clip_weights(model.clip, weights)
    model.to(device).eval()
    return model, ckpt
