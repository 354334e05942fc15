"""A text-only encoder for ``fda search``: an fda checkpoint's text tower without importing open_clip.

Importing open_clip costs seconds (it pulls in torchvision and ``torch._dynamo``) while a text query needs only the
BPE tokenizer and the text transformer. :func:`load_text_encoder` rebuilds the text tower of a plain OpenAI-style
CLIP with open_clip's parameter names (token and positional embeddings, pre-LN causal transformer, ``ln_final``,
pooling at the EOT token, ``text_projection``: what open_clip's ``CLIP.encode_text`` computes), loads it strictly
from the checkpoint, and loads open_clip's tokenizer module from its file alone. For anything else (layer scale, a
custom text tower, other pooling, a key that does not fit) it returns None and the caller builds the full model.
"""

import importlib.util
import logging
import os
import sys
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

PLAIN_MODEL_KEYS = {"embed_dim", "quick_gelu", "vision_cfg", "text_cfg"}
PLAIN_TEXT_KEYS = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"}


class QuickGELU(nn.Module):
    """OpenAI CLIP's activation: ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _Block(nn.Module):
    """open_clip's ``ResidualAttentionBlock`` without layer scale (same parameter names)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, hidden)), ("gelu", act()),
                                              ("c_proj", nn.Linear(hidden, width))]))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, heads: int, layers: int, mlp_ratio: float, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList([_Block(width, heads, mlp_ratio, act) for _ in range(layers)])


class TextTower(nn.Module):
    """The text side of a plain CLIP, named as in open_clip's ``CLIP`` (so its state dict keys load as they are)."""

    def __init__(self, model_cfg: Dict[str, Any]) -> None:
        super().__init__()
        text = model_cfg["text_cfg"]
        width, length = int(text["width"]), int(text["context_length"])
        act = QuickGELU if model_cfg.get("quick_gelu") else nn.GELU
        self.context_length = length
        self.token_embedding = nn.Embedding(int(text["vocab_size"]), width)
        self.positional_embedding = nn.Parameter(torch.empty(length, width))
        self.transformer = _Transformer(width, int(text["heads"]), int(text["layers"]),
                                        float(text.get("mlp_ratio", 4.0)), act)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, int(model_cfg["embed_dim"])))
        self.register_buffer("attn_mask", torch.full((length, length), float("-inf")).triu_(1), persistent=False)

    @torch.inference_mode()
    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """int64 ``[N, L]`` tokens -> unnormalised float32 ``[N, D]`` features."""
        x = self.token_embedding(tokens) + self.positional_embedding  # [N, L, W]
        for block in self.transformer.resblocks:
            x = block(x, self.attn_mask)
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]  # the EOT token has the largest id
        return x @ self.text_projection  # [N, D]


def load_tokenizer(context_length: int) -> Any:
    """open_clip's ``SimpleTokenizer``, loaded from its module file so that the open_clip package is not imported.

    Raises:
        ImportError: open_clip (or its tokenizer file) is not installed.
    """
    if "open_clip" in sys.modules:  # already paid for
        return sys.modules["open_clip"].SimpleTokenizer(context_length=context_length)
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("open_clip is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "tokenizer.py")
    name = "fda.model._open_clip_tokenizer"
    module = sys.modules.get(name)
    if module is None:
        file_spec = importlib.util.spec_from_file_location(name, path)
        if file_spec is None or file_spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(file_spec)
        file_spec.loader.exec_module(module)
        sys.modules[name] = module
    return module.SimpleTokenizer(context_length=context_length)


class TextEncoder:
    """Tokenizer plus text tower: ``encode(texts) -> float32 [N, D]`` unit-length rows (numpy)."""

    def __init__(self, tower: TextTower, tokenizer: Any, device: torch.device) -> None:
        self.tower, self.tokenizer, self.device = tower, tokenizer, device

    def encode(self, texts: List[str]) -> Any:
        """Unit-length float32 ``[N, D]`` features of ``texts`` (numpy)."""
        tokens = self.tokenizer(texts).to(self.device)  # [N, L] int64
        return F.normalize(self.tower.encode(tokens).float(), dim=-1).cpu().numpy()


def load_text_encoder(path: str, device: Union[str, torch.device] = "cpu") -> Optional[TextEncoder]:
    """The text encoder of an fda checkpoint, or None when its config is not a plain CLIP text tower.

    Args:
        path: an fda checkpoint (:mod:`fda.model.checkpoint`).
        device: where the tower runs (float32).
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - the full loader reports unreadable files properly
        log.debug("text-only path off for %s: %s", path, err)
        return None
    doc = ckpt.get("model_cfg") if isinstance(ckpt, dict) else None
    model_cfg = (doc or {}).get("model_cfg") or {}
    if (not {"embed_dim", "text_cfg"} <= set(model_cfg) or set(model_cfg) - PLAIN_MODEL_KEYS
            or set(model_cfg["text_cfg"]) - PLAIN_TEXT_KEYS):
        log.debug("text-only path off for %s: not a plain CLIP text tower", path)
        return None
    state = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("visual.") and k != "logit_scale"}
    tower = TextTower(model_cfg)
    try:
        tower.load_state_dict(state, strict=True)
        tokenizer = load_tokenizer(tower.context_length)
    except (RuntimeError, ImportError) as err:
        log.debug("text-only path off for %s: %s", path, str(err).splitlines()[0])
        return None
    device = torch.device(device)
    return TextEncoder(tower.to(device).eval(), tokenizer, device)
