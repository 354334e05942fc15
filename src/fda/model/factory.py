"""The one factory: architecture configs, model building, real checkpoints, the tokenizer.

Architecture configs are JSON package data, ``fda/model/configs/<name>.json`` =
``{"model_cfg": {open_clip schema}, "fda": {"open_clip_name", "alpha_init", "description"}}``. They are read here
and passed straight to open_clip's ``CLIP`` class (what ``open_clip.create_model`` instantiates), so open_clip's
global config registry is never touched; any plain open_clip ViT CLIP name (``ViT-B-32-quickgelu``, ``ViT-H-14``, ...)
is accepted too, read-only.

``load_alpha_clip`` resolves the weights first (a local file in any format of :mod:`fda.model.weights`, or an
open_clip pretrained tag that open_clip downloads), then builds the model, patches in the alpha channel, and loads
strictly. QuickGELU, which the shapes cannot reveal, is decided in this order: the ``quick_gelu`` argument, what the
weights say (OpenAI TorchScript, OpenAI int keys, Alpha-CLIP naming or ``conv1_alpha``: QuickGELU; an open_clip tag:
its pretrained config; an open_clip checkpoint: the model name it records), the named config, and for a bare
OpenAI-naming dict with no name, QuickGELU (OpenAI lineage).
"""

import copy
import functools
import json
import logging
import os
from importlib import resources
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from fda.errors import ConfigError, EnvError, InputError
from fda.model.alpha_vit import add_alpha_channel
from fda.model.transforms import CLIP_MEAN, CLIP_STD
from fda.model.video_clip import VideoAlphaCLIP
from fda.model.weights import Weights, infer_model_cfg, load_alpha_vision, load_clip_weights, read_weights

log = logging.getLogger(__name__)

Tokenizer = Callable[..., torch.Tensor]
_PATH_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".tar")


def _config_dir() -> Any:
    return resources.files("fda.model").joinpath("configs")


def list_models() -> List[str]:
    """Names of the architecture configs shipped with fda (``fda-tiny``, ``ViT-B-16``, ...), sorted."""
    return sorted(p.name[:-5] for p in _config_dir().iterdir() if p.name.endswith(".json"))


def _plain_vit_problem(model_cfg: Dict[str, Any]) -> Optional[str]:
    """Why ``model_cfg`` is not a plain open_clip ViT CLIP (the only kind that takes an alpha channel), or None."""
    vision, text = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    if model_cfg.get("custom_text") or "multimodal_cfg" in model_cfg or text.get("hf_model_name"):
        return "it has a custom text tower"
    if vision.get("timm_model_name"):
        return "its image tower is a timm model"
    if isinstance(vision.get("layers", 12), (list, tuple)):
        return "its image tower is a ResNet"
    if vision.get("attentional_pool") or vision.get("pool_type", "tok") != "tok":
        return "its image tower does not pool the class token"
    return None


def get_model_config(name: str) -> Dict[str, Any]:
    """The config document of a model name.

    Args:
        name: a shipped config (:func:`list_models`), a plain open_clip ViT CLIP name (``ViT-B/16`` is read as
            ``ViT-B-16``), or the path of a JSON file in the same schema.

    Returns:
        ``{"name", "model_cfg": {open_clip schema}, "fda": {...}}`` (a fresh copy).

    Raises:
        ConfigError: the name is unknown or not a plain ViT CLIP; the message lists the valid names.
    """
    if name.endswith(".json") and not os.path.isfile(name):
        raise ConfigError(f"--model config file not found: {name}")
    if name.endswith(".json"):
        with open(name, encoding="utf-8") as f:
            doc = json.load(f)
        if "model_cfg" not in doc:
            doc = {"model_cfg": doc}
        doc.setdefault("name", os.path.basename(name)[:-5])
        doc.setdefault("fda", {})
        return doc
    clean = name.replace("/", "-")
    shipped = _config_dir().joinpath(f"{clean}.json")
    if shipped.is_file():
        doc = json.loads(shipped.read_text(encoding="utf-8"))
        return {"name": clean, **doc}
    import open_clip

    oc_cfg = open_clip.get_model_config(clean)
    if oc_cfg:
        problem = _plain_vit_problem(oc_cfg)
        if problem:
            raise ConfigError(f"--model {name}: {problem}; the alpha channel needs a plain ViT CLIP "
                              f"({', '.join(list_models())})")
        return {"name": clean, "model_cfg": oc_cfg, "fda": {"open_clip_name": clean, "alpha_init": "zero"}}
    raise ConfigError(f"--model must be one of {', '.join(list_models())} (or an open_clip ViT CLIP name, or a "
                      f"config .json), got {name!r}")


def build_model(config: Dict[str, Any], use_alpha: bool = True) -> VideoAlphaCLIP:
    """Build a randomly initialised model (zero alpha conv) from a config document, on CPU in float32.

    Args:
        config: a document from :func:`get_model_config` (or a checkpoint's ``model_cfg``).
        use_alpha: the baseline switch (False: plain CLIP).

    Returns:
        The model, in train mode.

    Raises:
        ConfigError: the config is not a plain ViT CLIP or open_clip rejects a key.
    """
    import open_clip

    name = config.get("name", "?")
    if "model_cfg" not in config:
        raise ConfigError(f"model config {name} has no 'model_cfg' block")
    model_cfg = copy.deepcopy(config["model_cfg"])
    problem = _plain_vit_problem(model_cfg)
    if problem:
        raise ConfigError(f"model config {name}: {problem}; the alpha channel needs a plain ViT CLIP")
    try:
        clip = open_clip.CLIP(**model_cfg)
    except TypeError as err:
        raise ConfigError(f"model config {name}: open_clip rejects it: {err}") from None
    add_alpha_channel(clip.visual)
    return VideoAlphaCLIP(clip, config, use_alpha=use_alpha)


@functools.lru_cache(maxsize=4)
def get_tokenizer(context_length: int = 77) -> Tokenizer:
    """open_clip's BPE tokenizer (its vocabulary ships in the wheel: works offline).

    Args:
        context_length: tokens per caption (the model's ``context_length``).

    Returns:
        ``tokenizer(texts: str | list[str]) -> int64 [N, context_length]`` (SOT 49406, EOT 49407, padding 0;
        long captions are cut and end with EOT).
    """
    import open_clip

    return open_clip.SimpleTokenizer(context_length=context_length)


def count_truncated(texts: Sequence[str], context_length: int, tokenizer: Any = None) -> int:
    """How many ``texts`` the tokenizer cuts: BPE tokens plus the start and end tokens exceed ``context_length``.

    A cut caption keeps its first ``context_length - 2`` BPE tokens and ends with EOT (open_clip's rule, the same as
    CLIP4Clip's cut at ``max_words``, which keeps ``max_words - 2`` tokens).

    Args:
        texts: captions.
        context_length: the model's text context.
        tokenizer: a tokenizer with ``encode(text) -> list[int]``; default: :func:`get_tokenizer`.
    """
    encode = (tokenizer if tokenizer is not None and hasattr(tokenizer, "encode")
              else get_tokenizer(context_length)).encode
    return sum(1 for text in texts if len(encode(text)) + 2 > context_length)


def normalize_pretrained(pretrained: Optional[str]) -> Optional[str]:
    """The one rule for ``--pretrained`` in every command: ``none`` (any case) or empty means random init (None)."""
    if pretrained is None or pretrained.strip().lower() in ("", "none"):
        return None
    return pretrained


def _looks_like_path(value: str) -> bool:
    return os.sep in value or "/" in value or value.lower().endswith(_PATH_SUFFIXES)


def _download_tag(config: Dict[str, Any], tag: str, cache_dir: Optional[str]) -> Tuple[str, Dict[str, Any]]:
    """Download (or find in open_clip's cache) the weights of an open_clip pretrained tag."""
    import open_clip

    name = config.get("name", "?")
    oc_name = config.get("fda", {}).get("open_clip_name")
    if not oc_name:
        raise ConfigError(f"--pretrained {tag}: model {name} has no open_clip pretrained weights; "
                          f"pass a local file with --pretrained FILE")
    tag_cfg = open_clip.get_pretrained_cfg(oc_name, tag)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(oc_name)
        raise ConfigError(f"--pretrained must be a file or an open_clip tag of {oc_name} "
                          f"({', '.join(tags) or 'none'}), got {tag!r}")
    for key, ours in (("mean", CLIP_MEAN), ("std", CLIP_STD)):
        theirs = tag_cfg.get(key)
        if theirs is not None and tuple(round(v, 6) for v in theirs) != tuple(round(v, 6) for v in ours):
            log.warning("%s/%s was trained with image %s %s; fda normalises with CLIP's %s", oc_name, tag, key,
                        theirs, ours)
    cached = _cached_weights(tag_cfg, cache_dir)
    if cached:
        return cached, tag_cfg
    host = _weights_host(tag_cfg)
    if host and not _reachable(host):
        raise EnvError(f"open_clip weights {oc_name}/{tag} are not in the local cache and {host} cannot be reached "
                       f"(offline?): pass a local file with --pretrained FILE, --pretrained none for random init, or "
                       f"use --model fda-tiny")
    try:
        path = open_clip.download_pretrained(tag_cfg, cache_dir=cache_dir)
    except Exception as err:  # noqa: BLE001 - network and hub errors come in many types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise EnvError(f"cannot download open_clip weights {oc_name}/{tag} ({first}); pass a local file with "
                       f"--pretrained FILE, or use --model fda-tiny") from None
    if not path or not os.path.isfile(path):
        raise EnvError(f"open_clip returned no file for {oc_name}/{tag}; pass a local file with --pretrained FILE, "
                       f"or use --model fda-tiny")
    return path, tag_cfg


def _hub_files(tag_cfg: Dict[str, Any]) -> Tuple[str, List[str]]:
    """``(repo id, candidate file names)`` of a hub-hosted tag, safetensors first (open_clip's order)."""
    from open_clip.pretrained import HF_WEIGHTS_NAME, _get_safe_alternatives

    repo, filename = os.path.split(tag_cfg["hf_hub"])
    filename = filename or HF_WEIGHTS_NAME
    return repo, [*_get_safe_alternatives(filename), filename]


def _uses_hub(tag_cfg: Dict[str, Any]) -> bool:
    from open_clip.pretrained import has_hf_hub

    return bool(tag_cfg.get("hf_hub")) and has_hf_hub()


def _cached_weights(tag_cfg: Dict[str, Any], cache_dir: Optional[str]) -> Optional[str]:
    """The local file of a tag's weights when open_clip (hub or URL cache) already has it, else None.

    A cached hub file is returned as is: asking the hub whether it changed would block for a long time offline.
    """
    if "file" in tag_cfg:
        return tag_cfg["file"]
    if _uses_hub(tag_cfg):
        from huggingface_hub import try_to_load_from_cache

        repo, names = _hub_files(tag_cfg)
        for name in names:
            found = try_to_load_from_cache(repo_id=repo, filename=name, cache_dir=cache_dir)
            if isinstance(found, str) and os.path.isfile(found):
                return found
        return None
    url = tag_cfg.get("url", "")
    path = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url)) if url else ""
    return path if path and os.path.isfile(path) else None


def _weights_host(tag_cfg: Dict[str, Any]) -> Optional[str]:
    """The host a tag's weights would be downloaded from."""
    from urllib.parse import urlparse

    if _uses_hub(tag_cfg):
        return urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname
    return urlparse(tag_cfg.get("url", "")).hostname


def _reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host``:443 opens within ``timeout`` seconds (name lookup included)."""
    import socket
    import threading

    if host.endswith("huggingface.co") and os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    result: List[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _inferred_config(weights: Weights) -> Dict[str, Any]:
    """A config document for weights given without a model name: inferred shapes, named after a shipped match."""
    model_cfg = infer_model_cfg(weights.state_dict, quick_gelu=True if weights.quick_gelu is None else
                                weights.quick_gelu)
    for name in list_models():
        doc = get_model_config(name)
        if same_architecture(doc["model_cfg"], model_cfg):
            log.info("%s: architecture inferred from the file matches %s", weights.path, name)
            return {"name": name, "model_cfg": model_cfg, "fda": doc.get("fda", {})}
    base = os.path.splitext(os.path.basename(weights.path))[0]
    log.info("%s: architecture inferred from the file: %s", weights.path, model_cfg)
    return {"name": f"inferred-{base}", "model_cfg": model_cfg, "fda": {"open_clip_name": None, "alpha_init": "zero"}}


def same_architecture(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    """Equal ViT CLIP shapes of two ``model_cfg`` blocks (open_clip defaults filled in; QuickGELU not compared)."""
    vdef = {"head_width": 64, "mlp_ratio": 4.0}
    tdef = {"mlp_ratio": 4.0}
    return (a.get("embed_dim") == b.get("embed_dim")
            and {**vdef, **a.get("vision_cfg", {})} == {**vdef, **b.get("vision_cfg", {})}
            and {**tdef, **a.get("text_cfg", {})} == {**tdef, **b.get("text_cfg", {})})


def load_alpha_clip(model_name: Optional[str] = None, pretrained: Optional[str] = None,
                    alpha_checkpoint: Optional[str] = None, device: Union[str, torch.device] = "cpu", *,
                    quick_gelu: Optional[bool] = None, use_alpha: Optional[bool] = None,
                    cache_dir: Optional[str] = None) -> Tuple[VideoAlphaCLIP, Tokenizer]:
    """Build Alpha-CLIP on open_clip and load real weights, strictly.

    Args:
        model_name: a config name (:func:`list_models`, e.g. ``fda-tiny``, ``ViT-B-16``), an open_clip ViT CLIP name,
            or a config ``.json``. May be omitted when ``pretrained`` is an OpenAI-format file (the architecture is
            inferred from its shapes) or an fda checkpoint (which records its config).
        pretrained: an open_clip pretrained tag (``openai``, downloaded by open_clip) or a local file: an
            OpenAI-format state dict (with or without ``visual.conv1_alpha.weight``), an OpenAI TorchScript archive,
            an open_clip checkpoint, or an fda checkpoint. None or ``"none"``: random init.
        alpha_checkpoint: an official Alpha-CLIP release checkpoint of the vision tower, loaded over ``pretrained``'s
            vision tower (the text tower stays ``pretrained``'s).
        device: where the model lives.
        quick_gelu: force the activation (None: inferred, see the module docstring).
        use_alpha: the baseline switch; None: the value an fda checkpoint recorded, else True.
        cache_dir: open_clip's download cache for tags.

    Returns:
        ``(model, tokenizer)``: the :class:`VideoAlphaCLIP` in eval mode, and ``tokenizer(texts) -> int64 [N, L]``.

    Raises:
        ConfigError: unknown model name or tag, or nothing to build from.
        InputError: a file is missing, unreadable, or does not fit the model (the message names the keys).
        EnvError: a tag cannot be downloaded (offline).
    """
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise EnvError(f"--device {device}: no CUDA device is visible; use --device cpu")
    config = get_model_config(model_name) if model_name else None
    weights: Optional[Weights] = None
    pretrained = normalize_pretrained(pretrained)
    if pretrained:
        if os.path.isfile(pretrained):
            weights = read_weights(pretrained)
        elif _looks_like_path(pretrained):
            raise InputError(f"--pretrained file not found: {pretrained}")
        else:
            if config is None:
                raise ConfigError(f"--pretrained {pretrained} is an open_clip tag: name the model too (--model)")
            path, tag_cfg = _download_tag(config, pretrained, cache_dir)
            weights = read_weights(path)
            if weights.quick_gelu is None:
                weights.quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    if weights is not None and weights.kind == "alpha_vision":
        raise ConfigError(f"{weights.path} is an Alpha-CLIP vision checkpoint: pass it as the alpha checkpoint "
                          f"(--alpha-checkpoint), with the CLIP weights it was trained from as --pretrained")
    if weights is not None and weights.kind == "fda":
        saved = weights.meta["model_cfg"]
        if config is not None and not same_architecture(config.get("model_cfg", {}), saved.get("model_cfg", {})):
            raise ConfigError(f"--pretrained {weights.path} is an fda checkpoint of {saved.get('name')} but --model is "
                              f"{model_name}: pass --model {saved.get('name')}, or other weights")
        config = saved
        if use_alpha is None:
            use_alpha = bool(weights.meta.get("use_alpha", True))
    elif config is None:
        if weights is None:
            raise ConfigError("nothing to build: name a model (--model, e.g. fda-tiny) or give --pretrained FILE")
        config = _inferred_config(weights)
    config = copy.deepcopy(config)
    gelu = quick_gelu if quick_gelu is not None else (weights.quick_gelu if weights is not None else None)
    if gelu is not None and bool(config["model_cfg"].get("quick_gelu", False)) != gelu:
        log.info("QuickGELU %s (from %s), not the config's %s", gelu,
                 "the quick_gelu argument" if quick_gelu is not None else weights.path,  # type: ignore[union-attr]
                 config["model_cfg"].get("quick_gelu", False))
        config["model_cfg"]["quick_gelu"] = gelu
    model = build_model(config, use_alpha=True if use_alpha is None else use_alpha)
    if weights is not None:
        load_clip_weights(model.clip, weights)
    if alpha_checkpoint:
        if weights is None:
            log.warning("alpha checkpoint without --pretrained: the text tower of %s is random", config.get("name"))
        load_alpha_vision(model.clip, read_weights(alpha_checkpoint))
    model.to(device).eval()
    return model, get_tokenizer(model.context_length)
