"""Reading real checkpoints: formats, key conversion, architecture inference, strict loading.

Formats read (detected from the file, see ``../shared/ALPHA_CLIP.md``):

- ``openai``: a plain state dict in OpenAI naming (``visual.transformer.resblocks.0.attn.in_proj_weight``, text tower
  at top level), with or without ``visual.conv1_alpha.weight``; a dict taken from an instantiated official Alpha-CLIP
  model (``visual.*.attn.in_proj.weight``) is renamed. The int keys ``input_resolution``, ``context_length`` and
  ``vocab_size`` are dropped.
- ``torchscript``: an OpenAI TorchScript archive (``ViT-B-16.pt``), read once with ``torch.jit.load``.
- ``open_clip``: an open_clip training checkpoint ``{"state_dict", "epoch", "name", ...}`` (``module.`` stripped).
- ``fda``: an fda checkpoint (:mod:`fda.model.checkpoint`).
- ``alpha_vision``: the official Alpha-CLIP release checkpoint of the vision tower (``model.visual.state_dict()``:
  no ``visual.`` prefix, ``attn.in_proj.weight`` naming).

Everything but TorchScript is read with ``torch.load(weights_only=True)``. Loading is strict: a missing or unexpected
key, or a shape mismatch, is an :class:`fda.errors.InputError` naming the keys; only ``visual.conv1_alpha.weight``
may be missing from a full model checkpoint (it then stays zero, as in the official ``build_model``).
"""

import logging
import os
import re
import warnings
import zipfile
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from fda.errors import InputError

log = logging.getLogger(__name__)

ALPHA_KEY = "visual.conv1_alpha.weight"
OPENAI_INT_KEYS = ("input_resolution", "context_length", "vocab_size")
StateDict = Dict[str, torch.Tensor]


class Weights:
    """A checkpoint file read into memory.

    Attributes:
        path: the file.
        kind: ``openai``, ``torchscript``, ``open_clip``, ``fda`` or ``alpha_vision``.
        state_dict: tensors in open_clip naming (``alpha_vision``: in ``model.visual`` naming, already converted).
        quick_gelu: what the file says about the activation (True for OpenAI lineage), or None when it says nothing.
        meta: the rest of a wrapped checkpoint (``open_clip``: ``name``, ``epoch``; ``fda``: the whole dict).
        alpha_naming: the file names vision attention ``attn.in_proj.weight`` (Alpha-CLIP); error messages use it.
    """

    def __init__(self, path: str, kind: str, state_dict: StateDict, quick_gelu: Optional[bool],
                 meta: Optional[Dict[str, Any]] = None, alpha_naming: bool = False) -> None:
        self.path = path
        self.kind = kind
        self.state_dict = state_dict
        self.quick_gelu = quick_gelu
        self.meta = meta or {}
        self.alpha_naming = alpha_naming

    def file_key(self, key: str) -> str:
        """A key as the file spells it (for messages): Alpha-CLIP files say ``attn.in_proj.weight``."""
        if self.alpha_naming and (self.kind == "alpha_vision" or key.startswith("visual.")):
            return re.sub(r"\.attn\.in_proj_(weight|bias)$", r".attn.in_proj.\1", key)
        return key


def _is_torchscript(path: str) -> bool:
    """True for a TorchScript archive (a zip with ``code/`` and ``constants.pkl``); ``torch.save`` zips have neither."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _strip_prefix(sd: Mapping[str, Any], prefix: str) -> Dict[str, Any]:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return dict(sd)


def _alpha_clip_to_open_clip(sd: Mapping[str, Any]) -> Dict[str, Any]:
    """Alpha-CLIP vision attention naming -> OpenAI/open_clip naming: ``attn.in_proj.weight`` -> ``in_proj_weight``."""
    out = {}
    for k, v in sd.items():
        k = re.sub(r"\.attn\.in_proj\.(weight|bias)$", r".attn.in_proj_\1", k)
        out[k] = v
    return out


def _tensors_only(sd: Mapping[str, Any], path: str) -> StateDict:
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(f"{path}: entries that are not tensors: {_names(bad)}")
    return dict(sd)


def _names(keys: List[str], limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def _is_vision_only(sd: Mapping[str, Any]) -> bool:
    return "conv1.weight" in sd and "class_embedding" in sd and "text_projection" not in sd


def read_weights(path: str) -> Weights:
    """Read a checkpoint file in any supported format.

    Args:
        path: the file.

    Returns:
        The classified :class:`Weights`.

    Raises:
        InputError: the file is missing, unreadable, or in no supported format.
    """
    if not os.path.isfile(path):
        raise InputError(f"checkpoint file not found: {path}")
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():  # torch 2.x deprecates TorchScript; OpenAI's archives are still real
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(path, map_location="cpu")
        except Exception as err:  # noqa: BLE001 - any failure means "not a readable archive"
            raise InputError(f"{path}: cannot read TorchScript archive: {err}") from None
        sd = {k: v for k, v in module.state_dict().items() if k not in OPENAI_INT_KEYS}
        log.info("%s: OpenAI TorchScript archive, converted to a state dict", path)
        return Weights(path, "torchscript", _tensors_only(sd, path), True)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        obj: Any = load_file(path, device="cpu")
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - pickle errors have many types
            raise InputError(f"{path}: {load_error_cause(err)}") from None
    if not isinstance(obj, Mapping):
        raise InputError(f"{path}: expected a state dict or a checkpoint dict, got {type(obj).__name__}")
    if "fda_version" in obj and "model_cfg" in obj and "state_dict" in obj:
        return Weights(path, "fda", _tensors_only(obj["state_dict"], path), None, dict(obj))
    meta: Dict[str, Any] = {}
    kind = "openai"
    sd: Dict[str, Any] = dict(obj)
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        kind = "open_clip"
        meta = {k: v for k, v in obj.items() if k != "state_dict"}
        sd = dict(obj["state_dict"])
    sd = _strip_prefix(sd, "module.")
    if _is_vision_only(sd) or _is_vision_only(_strip_prefix(sd, "visual.")):
        sd = _strip_prefix(sd, "visual.")
        naming = any(re.search(r"\.attn\.in_proj\.(weight|bias)$", k) for k in sd)
        sd = _alpha_clip_to_open_clip(sd)
        return Weights(path, "alpha_vision", _tensors_only(sd, path), True, alpha_naming=naming)
    openai_marks = [k for k in OPENAI_INT_KEYS if k in sd]
    alpha_naming = any(re.search(r"\.attn\.in_proj\.(weight|bias)$", k) for k in sd)
    sd = {k: v for k, v in sd.items() if k not in OPENAI_INT_KEYS}
    sd = _alpha_clip_to_open_clip(sd)
    if "visual.proj" not in sd or "text_projection" not in sd:
        raise InputError(f"{path}: not a CLIP ViT checkpoint (no visual.proj / text_projection; "
                         f"first keys: {_names(list(sd), 5)})")
    quick_gelu: Optional[bool] = None
    if openai_marks or alpha_naming or ALPHA_KEY in sd:
        quick_gelu = True  # OpenAI lineage (OpenAI CLIP, Alpha-CLIP) always uses QuickGELU
    elif kind == "open_clip":
        quick_gelu = _open_clip_name_quick_gelu(meta.get("name"))
    log.info("%s: %s checkpoint, %d tensors", path, kind, len(sd))
    return Weights(path, kind, _tensors_only(sd, path), quick_gelu, meta, alpha_naming=alpha_naming)


def load_error_cause(err: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in a few words (torch's own messages run to paragraphs)."""
    text = " ".join(str(err).split())
    if "failed finding central directory" in text or "PytorchStreamReader failed" in text:
        return "truncated or corrupt (not a complete checkpoint archive): copy or save it again"
    if "legacy .tar format" in text:
        return "a tar archive (an fda shard, or a pre-1.6 PyTorch file), not a checkpoint fda reads"
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (f"it pickles Python objects ({found.group(1)}) that torch.load(weights_only=True) refuses: save a "
                f"plain state dict")
    if isinstance(err, EOFError) or "Ran out of input" in text:
        return "empty or truncated file"
    if "Weights only load failed" in text or type(err).__name__ == "UnpicklingError" or isinstance(
            err, (KeyError, ValueError)):
        return "not a PyTorch checkpoint"
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0] if text else type(err).__name__
    return f"cannot be read with torch.load ({type(err).__name__}: {first[:160]})"


def _open_clip_name_quick_gelu(name: Any) -> Optional[bool]:
    """The activation of an open_clip training checkpoint, from the model name it records."""
    if not isinstance(name, str) or not name:
        return None
    if "quickgelu" in name.lower():
        return True
    import open_clip

    cfg = open_clip.get_model_config(name)
    return bool(cfg.get("quick_gelu", False)) if cfg else None


def _count_blocks(sd: Mapping[str, Any], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    idx = {int(m.group(1)) for k in sd for m in [pat.match(k)] if m}
    return max(idx) + 1 if idx else 0


def infer_model_cfg(sd: Mapping[str, torch.Tensor], quick_gelu: bool = True) -> Dict[str, Any]:
    """The open_clip ``model_cfg`` of a ViT CLIP state dict in OpenAI naming (the official ``build_model`` rules).

    Heads are ``width // 64`` in both towers, as in OpenAI CLIP and Alpha-CLIP.

    Args:
        sd: state dict in OpenAI/open_clip naming.
        quick_gelu: activation to record (the shapes cannot tell).

    Returns:
        ``{"embed_dim", "quick_gelu", "vision_cfg", "text_cfg"}``.

    Raises:
        InputError: a needed key is missing or a width is not a multiple of 64.
    """
    try:
        conv1 = sd["visual.conv1.weight"]  # [W, 3, P, P]
        vwidth, patch = int(conv1.shape[0]), int(conv1.shape[-1])
        grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        vlayers = _count_blocks(sd, "visual.transformer.resblocks.")
        vmlp = sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / vwidth
        embed_dim = int(sd["text_projection"].shape[1])
        context = int(sd["positional_embedding"].shape[0])
        vocab = int(sd["token_embedding.weight"].shape[0])
        twidth = int(sd["ln_final.weight"].shape[0])
        tlayers = _count_blocks(sd, "transformer.resblocks.")
        tmlp = sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / twidth
    except KeyError as err:
        raise InputError(f"cannot infer the architecture: key {err.args[0]} missing; pass the model name") from None
    for tower, width in (("vision", vwidth), ("text", twidth)):
        if width % 64:
            raise InputError(f"cannot infer {tower} heads: width {width} is not a multiple of 64 (OpenAI uses "
                             f"width // 64); pass the model name")
    return {
        "embed_dim": embed_dim,
        "quick_gelu": bool(quick_gelu),
        "vision_cfg": {"image_size": patch * grid, "layers": vlayers, "width": vwidth, "patch_size": patch,
                       "head_width": 64, "mlp_ratio": float(vmlp)},
        "text_cfg": {"context_length": context, "vocab_size": vocab, "width": twidth, "heads": twidth // 64,
                     "layers": tlayers, "mlp_ratio": float(tmlp)},
    }


def _check_and_load(module: nn.Module, sd: StateDict, what: str, allow_missing: Tuple[str, ...] = (),
                    show: Callable[[str], str] = str) -> List[str]:
    """Strictly load ``sd`` into ``module``; returns the allowed keys that were missing. ``show`` spells keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    bad_missing = [k for k in missing if k not in allow_missing]
    shapes = [f"{show(k)} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in sd
              if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    problems = []
    if bad_missing:
        problems.append(f"missing keys: {_names([show(k) for k in bad_missing])}")
    if unexpected:
        problems.append(f"unexpected keys: {_names([show(k) for k in unexpected])}")
    if shapes:
        problems.append(f"shape mismatches (file vs model): {_names(shapes, 4)}")
    if problems:
        raise InputError(f"{what}: " + "; ".join(problems))
    with torch.no_grad():
        module.load_state_dict(sd, strict=False)
    return [k for k in missing if k in allow_missing]


def load_clip_weights(clip: nn.Module, weights: Weights) -> None:
    """Strictly load a full-model checkpoint into an open_clip ``CLIP`` patched with ``conv1_alpha``.

    Args:
        clip: the model (its ``visual`` already an ``AlphaVisionTransformer``).
        weights: a full-model checkpoint (not ``alpha_vision``).

    Raises:
        InputError: keys or shapes do not match; the message names them.
    """
    sd = dict(weights.state_dict)
    if "logit_scale" in sd and sd["logit_scale"].ndim != clip.logit_scale.ndim:
        sd["logit_scale"] = sd["logit_scale"].reshape(clip.logit_scale.shape)
    missed = _check_and_load(clip, sd, f"{weights.path} ({weights.kind}) does not fit the model",
                             allow_missing=(ALPHA_KEY,), show=weights.file_key)
    if missed:
        with torch.no_grad():
            clip.visual.conv1_alpha.weight.zero_()
        log.info("%s has no %s: the alpha conv starts at zero (plain CLIP)", weights.path, ALPHA_KEY)


def load_alpha_vision(clip: nn.Module, weights: Weights) -> None:
    """Strictly load an official Alpha-CLIP release vision checkpoint into ``clip.visual``.

    Every key of ``clip.visual`` (``conv1_alpha`` included) must be in the file, and nothing else.

    Raises:
        InputError: the file is not a vision checkpoint, or keys or shapes do not match.
    """
    if weights.kind != "alpha_vision":
        raise InputError(f"{weights.path} is a {weights.kind} checkpoint, not an Alpha-CLIP vision checkpoint "
                         f"(keys like conv1_alpha.weight, transformer.resblocks.0.attn.in_proj.weight)")
    _check_and_load(clip.visual, dict(weights.state_dict), f"{weights.path} (Alpha-CLIP vision) does not fit the "
                    f"model's vision tower", show=weights.file_key)
