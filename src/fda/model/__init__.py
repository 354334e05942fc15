"""Alpha-CLIP on open_clip: alpha patch embedding, checkpoints, video encoder, transforms.

Public API (imported lazily, so ``import fda.model.transforms`` does not pay for open_clip)::

    from fda.model import create, resolve, effective_pretrained   # the front door: a ModelSource -> a model
    from fda.model import load_alpha_clip, list_models, build_model, get_model_config, get_tokenizer
    from fda.model import save_checkpoint, load_checkpoint, VideoAlphaCLIP
    from fda.model.transforms import shard_batch_to_inputs, random_resized_crop_flip
"""

import importlib
from typing import Any

_EXPORTS = {
    "create": "fda.model.source",
    "resolve": "fda.model.source",
    "effective_pretrained": "fda.model.source",
    "load_alpha_clip": "fda.model.factory",
    "list_models": "fda.model.factory",
    "build_model": "fda.model.factory",
    "get_model_config": "fda.model.factory",
    "get_tokenizer": "fda.model.factory",
    "count_truncated": "fda.model.factory",
    "save_checkpoint": "fda.model.checkpoint",
    "load_checkpoint": "fda.model.checkpoint",
    "VideoAlphaCLIP": "fda.model.video_clip",
    "AlphaVisionTransformer": "fda.model.alpha_vit",
    "add_alpha_channel": "fda.model.alpha_vit",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fda.model' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> Any:
    return sorted(list(globals()) + list(_EXPORTS))
