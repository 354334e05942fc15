"""fda.model: alpha patch embedding, real checkpoint formats, official-equivalence, video pooling, checkpoints.

The official Alpha-CLIP code (SunzeY/AlphaCLIP) is not on PyPI and cannot be fetched here, so ``_Ref*`` below is an
independent minimal re-implementation of its forward, written for these tests from the official maths: OpenAI CLIP's
ViT with ``conv1_alpha`` summed into the patch embedding, vision attention with ``in_proj = nn.Linear(d, 3d)``
(keys ``attn.in_proj.weight``), ``nn.MultiheadAttention`` in the text tower, QuickGELU, LayerNorm in float32,
``ln_post(x[:, 0]) @ proj``, argmax (EOT) text pooling, and the official ``build_model`` shape inference (heads =
width // 64, layers counted by ``in_proj_weight`` keys, a zero ``conv1_alpha`` inserted when absent). It shares no
code with open_clip or fda. Two deliberate differences from the official loader: it loads strictly, and it skips the
fp16 cast (we compare float32 maths). Every checkpoint below is written by the test itself into a temp folder.
"""

import json
import math
import os
import re
from collections import OrderedDict
from typing import Dict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fda.errors import ConfigError, EnvError, InputError
from fda.model import build_model, get_model_config, get_tokenizer, list_models, load_alpha_clip
from fda.model.checkpoint import load_checkpoint, save_checkpoint
from fda.model.transforms import (ALPHA_EMPTY, ALPHA_FULL, CLIP_MEAN, CLIP_STD, random_resized_crop_flip,
                                  shard_batch_to_inputs)
from fda.model.weights import read_weights

ATOL = RTOL = 1e-5
pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore:`torch.jit.[a-z_]*` is deprecated")


# --------------------------------------------------------------------------------------------------------------------
# Independent reference: the official OpenAI-CLIP / Alpha-CLIP forward and build_model (see module docstring).

class _RefLayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


class _RefQuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _RefAttention(nn.Module):
    """Alpha-CLIP's vision attention: plain multi-head attention with an ``in_proj`` Linear."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [L, N, C]
        length, n, c = x.shape
        q, k, v = self.in_proj(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(length, n * self.heads, c // self.heads).transpose(0, 1) for t in (q, k, v))
        attn = torch.bmm(q * (c // self.heads) ** -0.5, k.transpose(1, 2)).softmax(dim=-1)
        out = torch.bmm(attn, v).transpose(0, 1).reshape(length, n, c)
        return self.out_proj(out)


class _RefBlock(nn.Module):
    def __init__(self, width: int, heads: int, mask: torch.Tensor = None, custom: bool = False) -> None:
        super().__init__()
        self.custom = custom
        self.attn = _RefAttention(width, heads) if custom else nn.MultiheadAttention(width, heads)
        self.ln_1 = _RefLayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, 4 * width)), ("gelu", _RefQuickGELU()),
                                              ("c_proj", nn.Linear(4 * width, width))]))
        self.ln_2 = _RefLayerNorm(width)
        self.mask = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + (self.attn(y) if self.custom else self.attn(y, y, y, need_weights=False, attn_mask=self.mask)[0])
        return x + self.mlp(self.ln_2(x))


class _RefTransformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mask: torch.Tensor = None, custom: bool = False) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*[_RefBlock(width, heads, mask, custom) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class _RefVisual(nn.Module):
    def __init__(self, size: int, patch: int, width: int, layers: int, heads: int, out: int, alpha: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        if alpha:
            self.conv1_alpha = nn.Conv2d(1, width, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((size // patch) ** 2 + 1, width))
        self.ln_pre = _RefLayerNorm(width)
        self.transformer = _RefTransformer(width, layers, heads, custom=alpha)
        self.ln_post = _RefLayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, out))

    def forward(self, x: torch.Tensor, alpha: torch.Tensor = None) -> torch.Tensor:
        x = self.conv1(x)
        if alpha is not None:
            x = x + self.conv1_alpha(alpha)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [N, grid**2, W]
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.ln_pre(x).permute(1, 0, 2)  # NLD -> LND
        x = self.transformer(x).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class _RefCLIP(nn.Module):
    """Official CLIP; ``alpha=True``: Alpha-CLIP (conv1_alpha, in_proj vision attention), else OpenAI CLIP."""

    def __init__(self, embed: int, size: int, vlayers: int, vwidth: int, patch: int, context: int, vocab: int,
                 twidth: int, theads: int, tlayers: int, alpha: bool = True, vheads: int = None) -> None:
        super().__init__()
        self.visual = _RefVisual(size, patch, vwidth, vlayers, vheads or vwidth // 64, embed, alpha)
        mask = torch.full((context, context), float("-inf")).triu_(1)
        self.transformer = _RefTransformer(twidth, tlayers, theads, mask)
        self.token_embedding = nn.Embedding(vocab, twidth)
        self.positional_embedding = nn.Parameter(torch.zeros(context, twidth))
        self.ln_final = _RefLayerNorm(twidth)
        self.text_projection = nn.Parameter(torch.zeros(twidth, embed))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(100.0)))

    def encode_image(self, image: torch.Tensor, alpha: torch.Tensor = None) -> torch.Tensor:
        return self.visual(image, alpha)

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(text) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection

    def forward(self, image: torch.Tensor, text: torch.Tensor):  # what TorchScript tracing records (OpenAI model)
        return self.encode_image(image), self.encode_text(text)


def _ref_build_model(sd: Dict[str, torch.Tensor]) -> _RefCLIP:
    """The official ``build_model``: shapes from the dict, Alpha-CLIP renames, zero conv1_alpha when absent."""
    sd = {k: v for k, v in sd.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    vwidth = sd["visual.conv1.weight"].shape[0]
    vlayers = len([k for k in sd if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")])
    patch = sd["visual.conv1.weight"].shape[-1]
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    twidth = sd["ln_final.weight"].shape[0]
    tlayers = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks")})
    model = _RefCLIP(sd["text_projection"].shape[1], patch * grid, vlayers, vwidth, patch,
                     sd["positional_embedding"].shape[0], sd["token_embedding.weight"].shape[0], twidth,
                     twidth // 64, tlayers)
    new = {}
    for k, v in sd.items():
        if k.startswith("visual."):
            k = k.replace("in_proj_weight", "in_proj.weight").replace("in_proj_bias", "in_proj.bias")
        new[k] = v
    new.setdefault("visual.conv1_alpha.weight", torch.zeros_like(sd["visual.conv1.weight"][:, :1]))
    model.load_state_dict(new, strict=True)  # the official uses strict=False after an fp16 cast
    return model.eval()


def _randomise(model: nn.Module, seed: int) -> None:
    """Scale-aware random weights, so that features are O(1) and a 1e-5 tolerance means something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if re.search(r"ln_\w*\.weight$|ln_final\.weight$", name):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif leaf in ("bias", "in_proj_bias") or name.endswith("in_proj.bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            elif leaf == "logit_scale":
                p.fill_(math.log(100.0))
            elif "embedding" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif p.dim() >= 2:
                fan_in = p.shape[0] if leaf in ("proj", "text_projection") else p[0].numel()  # x @ proj vs Linear
                p.copy_(torch.randn(p.shape, generator=g) * fan_in ** -0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * p.numel() ** -0.5)


def _to_openai(sd: Dict[str, torch.Tensor], alpha: bool = True, int_keys: bool = False) -> Dict[str, torch.Tensor]:
    """Alpha-CLIP naming -> OpenAI naming (optionally without conv1_alpha, optionally with the int keys)."""
    out = {re.sub(r"\.attn\.in_proj\.(weight|bias)$", r".attn.in_proj_\1", k): v.clone() for k, v in sd.items()}
    if not alpha:
        out.pop("visual.conv1_alpha.weight")
    if int_keys:
        out.update(input_resolution=torch.tensor(32), context_length=torch.tensor(CTX), vocab_size=torch.tensor(VOCAB))
    return out


# An architecture the official shape inference can read back: widths multiple of 64, 2 heads per tower.
ARCH = dict(embed=32, size=32, vlayers=2, vwidth=128, patch=16, context=8, vocab=1000, twidth=128, theads=2,
            tlayers=2)
CTX, VOCAB = ARCH["context"], ARCH["vocab"]


@pytest.fixture(scope="module")
def ref() -> _RefCLIP:
    model = _RefCLIP(**ARCH)
    _randomise(model, 0)
    return model.eval()


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(3, 3, 32, 32, generator=g)
    masks = (torch.rand(3, 1, 32, 32, generator=g) > 0.5).float()
    alphas = (masks - 0.5) / 0.26
    tokens = torch.randint(1, VOCAB - 2, (3, CTX), generator=g)
    tokens[torch.arange(3), torch.tensor([3, 7, 5])] = VOCAB - 1  # EOT: the highest id, found by argmax
    return images, alphas, tokens


@pytest.fixture(scope="module")
def files(tmp_path_factory, ref, inputs):
    """Every checkpoint format, written from the reference model."""
    d = tmp_path_factory.mktemp("ckpts")
    sd = ref.state_dict()
    names = {"alpha_naming": "alpha_naming.pt", "openai_alpha": "openai_alpha.pth", "openai_plain": "openai_plain.pt",
             "openai_bare": "openai_bare.bin", "torchscript": "ViT-test.pt", "release": "clip_test_fultune.pth",
             "open_clip": "epoch_3.pt"}
    paths = {k: str(d / n) for k, n in names.items()}
    torch.save(sd, paths["alpha_naming"])  # a dict from an instantiated official model
    torch.save(_to_openai(sd), paths["openai_alpha"])
    torch.save(_to_openai(sd, alpha=False, int_keys=True), paths["openai_plain"])
    torch.save(_to_openai(sd, alpha=False), paths["openai_bare"])
    torch.save(ref.visual.state_dict(), paths["release"])  # the release format: model.visual.state_dict()
    # OpenAI TorchScript archive: the plain OpenAI CLIP (no alpha, MHA vision attention) with its int attributes
    openai = _RefCLIP(**ARCH, alpha=False)
    openai.load_state_dict(_to_openai(sd, alpha=False), strict=True)
    for key, val in (("input_resolution", 32), ("context_length", CTX), ("vocab_size", VOCAB)):
        openai.register_buffer(key, torch.tensor(val))
    images, _, tokens = inputs
    traced = torch.jit.trace(openai.eval(), (images, tokens), check_trace=False)
    traced.save(paths["torchscript"])
    # open_clip training checkpoint: DDP prefix, extra fields, no conv1_alpha
    oc_sd = {"module." + k: v for k, v in _to_openai(sd, alpha=False).items()}
    torch.save({"epoch": 3, "state_dict": oc_sd, "optimizer": {"state": {}, "param_groups": []}}, paths["open_clip"])
    return paths


def _zero_alpha(ref: _RefCLIP) -> _RefCLIP:
    return _ref_build_model(_to_openai(ref.state_dict(), alpha=False))


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=ATOL, rtol=RTOL), f"max |diff| {(a - b).abs().max().item():.3g}"


def _tiny(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return load_alpha_clip("fda-tiny", **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# Official equivalence (1e-5, float32, CPU), one test per checkpoint format

def test_reference_is_meaningful(ref, inputs):
    """The reference gives O(1) features, masks change them, and QuickGELU vs GELU differs by far more than 1e-5."""
    images, alphas, tokens = inputs
    with torch.no_grad():
        feats = ref.encode_image(images, alphas)
        assert feats.abs().mean() > 0.1
        assert (feats - ref.encode_image(images, -alphas)).abs().max() > 1e-2
        assert ref.encode_text(tokens).abs().mean() > 0.1


@pytest.mark.parametrize("fmt", ["alpha_naming", "openai_alpha"])
def test_full_alpha_state_dict_matches_official(fmt, files, ref, inputs):
    images, alphas, tokens = inputs
    model, _ = load_alpha_clip(pretrained=files[fmt])  # architecture inferred from the file
    assert model.model_cfg["model_cfg"]["quick_gelu"] is True
    assert model.image_size == 32 and model.context_length == CTX
    with torch.no_grad():
        _close(model.encode_image(images, alphas), ref.encode_image(images, alphas))
        _close(model.encode_text(tokens), ref.encode_text(tokens))


@pytest.mark.parametrize("fmt", ["openai_plain", "openai_bare", "torchscript", "open_clip"])
def test_openai_weights_without_alpha_match_official_zero_init(fmt, files, ref, inputs):
    images, alphas, tokens = inputs
    official = _zero_alpha(ref)  # the official build_model inserts a zero conv1_alpha
    model, _ = load_alpha_clip(pretrained=files[fmt])
    assert model.model_cfg["model_cfg"]["quick_gelu"] is True
    assert torch.count_nonzero(model.clip.visual.conv1_alpha.weight) == 0
    with torch.no_grad():
        _close(model.encode_image(images, alphas), official.encode_image(images, alphas))
        _close(model.encode_text(tokens), official.encode_text(tokens))


def test_torchscript_archive_reproduces_its_own_outputs(files, inputs):
    images, _, tokens = inputs
    archive = torch.jit.load(files["torchscript"])
    want_img, want_txt = archive(images, tokens)
    model, _ = load_alpha_clip(pretrained=files["torchscript"])
    with torch.no_grad():
        _close(model.encode_image(images, None), want_img)
        _close(model.encode_text(tokens), want_txt)


def test_release_vision_checkpoint_over_openai_weights(files, ref, inputs):
    images, alphas, tokens = inputs
    model, _ = load_alpha_clip(pretrained=files["openai_plain"], alpha_checkpoint=files["release"])
    assert torch.count_nonzero(model.clip.visual.conv1_alpha.weight) > 0
    with torch.no_grad():
        _close(model.encode_image(images, alphas), ref.encode_image(images, alphas))
        _close(model.encode_text(tokens), ref.encode_text(tokens))


def test_half_precision_release_checkpoint_loads_into_float32(files, ref, inputs, tmp_path):
    """Release files may hold fp16 tensors: they load into the fp32 model as the fp16-rounded values."""
    path = str(tmp_path / "half.pth")
    torch.save({k: v.half() for k, v in ref.visual.state_dict().items()}, path)
    model, _ = load_alpha_clip(pretrained=files["openai_plain"], alpha_checkpoint=path)
    assert model.clip.visual.conv1_alpha.weight.dtype == torch.float32
    rounded = _RefCLIP(**ARCH)
    rounded.load_state_dict({k: (v.half().float() if k.startswith("visual.") else v)
                             for k, v in ref.state_dict().items()})
    images, alphas, _ = inputs
    with torch.no_grad():
        _close(model.encode_image(images, alphas), rounded.eval().encode_image(images, alphas))


def test_named_config_file_with_heads_not_inferable(tmp_path, inputs):
    """fda-tiny has 16-wide heads: loading needs the name, and then matches the official maths."""
    cfg = get_model_config("fda-tiny")["model_cfg"]
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    ref = _RefCLIP(cfg["embed_dim"], v["image_size"], v["layers"], v["width"], v["patch_size"], t["context_length"],
                   t["vocab_size"], t["width"], t["heads"], t["layers"], vheads=v["width"] // v["head_width"])
    _randomise(ref, 5)
    path = str(tmp_path / "tiny.pt")
    torch.save(_to_openai(ref.state_dict()), path)
    with pytest.raises(InputError, match="multiple of 64"):
        load_alpha_clip(pretrained=path)
    model, tokenizer = load_alpha_clip("fda-tiny", pretrained=path)
    images, alphas, _ = inputs
    tokens = tokenizer(["a man is driving a car", "a dog runs"])
    with torch.no_grad():
        _close(model.encode_image(images, alphas), ref.encode_image(images, alphas))
        _close(model.encode_text(tokens), ref.encode_text(tokens))


# --------------------------------------------------------------------------------------------------------------------
# QuickGELU inference

def test_quick_gelu_inferred_per_format(files, tmp_path):
    for fmt in ("alpha_naming", "openai_alpha", "openai_plain", "torchscript", "release"):
        assert read_weights(files[fmt]).quick_gelu is True, fmt
    assert read_weights(files["openai_bare"]).quick_gelu is None  # says nothing: bare dicts default to OpenAI's
    assert read_weights(files["open_clip"]).quick_gelu is None
    sd = torch.load(files["open_clip"], weights_only=True)
    for name, want in (("ViT-B-32", False), ("ViT-B-32-quickgelu", True)):
        path = str(tmp_path / f"{name}.pt")
        torch.save({**sd, "name": name}, path)
        assert read_weights(path).quick_gelu is want, name


def test_wrong_activation_is_caught_at_1e5(files, ref, inputs):
    images, alphas, _ = inputs
    model, _ = load_alpha_clip(pretrained=files["openai_alpha"], quick_gelu=False)
    assert model.model_cfg["model_cfg"]["quick_gelu"] is False
    with torch.no_grad():
        diff = (model.encode_image(images, alphas) - ref.encode_image(images, alphas)).abs().max()
    assert diff > 1e-3


def test_open_clip_tag_decides_quick_gelu_offline(monkeypatch, tmp_path, files, ref, inputs):
    """A tag's pretrained config says QuickGELU (openai) or GELU (laion); the download itself is faked."""
    import open_clip

    doc = {"model_cfg": {"embed_dim": ARCH["embed"], "quick_gelu": False,
                         "vision_cfg": {"image_size": 32, "layers": 2, "width": 128, "patch_size": 16},
                         "text_cfg": {"context_length": CTX, "vocab_size": VOCAB, "width": 128, "heads": 2,
                                      "layers": 2}},
           "fda": {"open_clip_name": "ViT-B-32"}}
    cfg_path = tmp_path / "small-b32.json"
    cfg_path.write_text(json.dumps(doc))
    monkeypatch.setattr(open_clip, "download_pretrained", lambda cfg, cache_dir=None: files["openai_bare"])
    monkeypatch.setattr("fda.model.factory._cached_weights", lambda cfg, cache_dir=None: None)
    monkeypatch.setattr("fda.model.factory._reachable", lambda host, timeout=3.0: True)  # the download is faked
    model, _ = load_alpha_clip(str(cfg_path), pretrained="openai")
    assert model.model_cfg["model_cfg"]["quick_gelu"] is True
    images, alphas, tokens = inputs
    with torch.no_grad():
        _close(model.encode_text(tokens), ref.encode_text(tokens))
    model, _ = load_alpha_clip(str(cfg_path), pretrained="laion2b_s34b_b79k")
    assert model.model_cfg["model_cfg"]["quick_gelu"] is False


def test_offline_tag_is_env_error(monkeypatch):
    import open_clip

    def fail(cfg, cache_dir=None):
        raise OSError("We couldn't connect to the hub")

    monkeypatch.setattr(open_clip, "download_pretrained", fail)
    with pytest.raises(EnvError, match="--pretrained FILE") as err:
        load_alpha_clip("ViT-B-32", pretrained="openai")
    assert err.value.exit_code == 4 and "fda-tiny" in str(err.value)


# --------------------------------------------------------------------------------------------------------------------
# Strict loading

def test_strict_loading_names_missing_and_unexpected_keys(files, tmp_path):
    sd = torch.load(files["openai_alpha"], weights_only=True)
    del sd["visual.ln_post.weight"]
    sd["visual.bogus.weight"] = torch.zeros(3)
    path = str(tmp_path / "bad.pt")
    torch.save(sd, path)
    with pytest.raises(InputError) as err:
        load_alpha_clip(pretrained=path)
    assert "visual.ln_post.weight" in str(err.value) and "visual.bogus.weight" in str(err.value)
    assert err.value.exit_code == 3


def test_strict_loading_names_shape_mismatch(files):
    with pytest.raises(InputError, match=r"shape mismatches.*text_projection \(128, 32\) vs \(32, 16\)"):
        load_alpha_clip("fda-tiny", pretrained=files["openai_alpha"])


def test_release_checkpoint_is_loaded_strictly(files, tmp_path):
    sd = torch.load(files["release"], weights_only=True)
    del sd["conv1_alpha.weight"]
    sd["transformer.resblocks.9.attn.in_proj.weight"] = torch.zeros(1)
    path = str(tmp_path / "bad_release.pth")
    torch.save(sd, path)
    with pytest.raises(InputError) as err:
        load_alpha_clip(pretrained=files["openai_plain"], alpha_checkpoint=path)
    assert "missing keys: conv1_alpha.weight" in str(err.value)  # spelled as in the file
    assert "unexpected keys: transformer.resblocks.9.attn.in_proj.weight" in str(err.value)
    with pytest.raises(ConfigError, match="alpha checkpoint"):
        load_alpha_clip(pretrained=files["release"])


def test_unreadable_and_missing_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.pt"):
        load_alpha_clip(pretrained=str(junk))
    with pytest.raises(InputError, match="not found"):
        load_alpha_clip("fda-tiny", pretrained=str(tmp_path / "missing.pt"))


# --------------------------------------------------------------------------------------------------------------------
# The alpha channel on open_clip

def test_zero_alpha_equals_plain_open_clip_for_any_mask(tmp_path):
    """Plain open_clip, built by its own factory from a local-dir, with the same weights: same features."""
    import open_clip

    model, _ = _tiny(0)
    local = tmp_path / "plain"
    local.mkdir()
    (local / "open_clip_config.json").write_text(json.dumps({"model_cfg": model.model_cfg["model_cfg"]}))
    plain_sd = {k: v for k, v in model.clip.state_dict().items() if k != "visual.conv1_alpha.weight"}
    torch.save(plain_sd, local / "open_clip_pytorch_model.bin")
    plain = open_clip.create_model(f"local-dir:{local}").eval()
    g = torch.Generator().manual_seed(2)
    images = torch.randn(4, 3, 32, 32, generator=g)
    with torch.no_grad():
        want = plain.encode_image(images)
        for alphas in (torch.randn(4, 1, 32, 32, generator=g) * 50, torch.full((4, 1, 32, 32), ALPHA_FULL),
                       torch.full((4, 1, 32, 32), ALPHA_EMPTY), None):
            assert torch.allclose(model.encode_image(images, alphas), want, atol=1e-6, rtol=0)
        tokens = get_tokenizer(16)(["a red car", "two people dancing"])
        assert torch.allclose(model.encode_text(tokens), plain.encode_text(tokens), atol=1e-6, rtol=0)


def test_gradients_reach_the_alpha_conv():
    model, _ = _tiny(0)
    model.train()
    (alpha_w,) = model.alpha_parameters()
    assert alpha_w is model.clip.visual.conv1_alpha.weight and tuple(alpha_w.shape) == (32, 1, 16, 16)
    g = torch.Generator().manual_seed(3)
    images = torch.randn(2, 3, 3, 32, 32, generator=g)
    alphas = torch.where(torch.rand(2, 3, 1, 32, 32, generator=g) > 0.5, ALPHA_FULL, ALPHA_EMPTY)
    video, text, scale = model(images, alphas, None, get_tokenizer(16)(["a", "b"]))
    (scale * video @ text.T).logsumexp(dim=1).sum().backward()
    assert alpha_w.grad is not None and alpha_w.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model.use_alpha = False  # the baseline never touches the alpha conv
    video, text, scale = model(images, alphas, None, get_tokenizer(16)(["a", "b"]))
    (scale * video @ text.T).sum().backward()
    assert alpha_w.grad is None


def test_trained_alpha_changes_features_and_baseline_ignores_masks():
    model, _ = _tiny(0)
    with torch.no_grad():
        model.clip.visual.conv1_alpha.weight.normal_(0, 0.1)
    g = torch.Generator().manual_seed(4)
    images = torch.randn(2, 4, 3, 32, 32, generator=g)
    full = torch.full((2, 4, 1, 32, 32), ALPHA_FULL)
    empty = torch.full((2, 4, 1, 32, 32), ALPHA_EMPTY)
    with torch.no_grad():
        assert (model.encode_video(images, full) - model.encode_video(images, empty)).abs().max() > 1e-3
        model.use_alpha = False
        base = model.encode_video(images, None)
        assert torch.equal(model.encode_video(images, full), base)
        assert torch.equal(model.encode_video(images, empty), base)
        assert torch.equal(model.encode_image(images[:, 0], full[:, 0]), model.encode_image(images[:, 0], None))


# --------------------------------------------------------------------------------------------------------------------
# Video pooling

def test_video_pooling_is_masked_mean_of_normalised_frames():
    model, _ = _tiny(1)
    with torch.no_grad():
        model.clip.visual.conv1_alpha.weight.normal_(0, 0.1)
    g = torch.Generator().manual_seed(5)
    images = torch.randn(2, 4, 3, 32, 32, generator=g)
    alphas = torch.randn(2, 4, 1, 32, 32, generator=g)
    valid = torch.tensor([[True, True, True, False], [True, False, False, False]])
    padded_i, padded_a = images.clone(), alphas.clone()
    padded_i[~valid] = float("nan")  # padding must not be encoded at all
    padded_a[~valid] = 1e6
    with torch.no_grad():
        got = model.encode_video(padded_i, padded_a, valid)
        assert torch.isfinite(got).all()
        assert torch.allclose(got.norm(dim=-1), torch.ones(2), atol=1e-6)
        for b, n in enumerate((3, 1)):
            frames = F.normalize(model.encode_image(images[b, :n], alphas[b, :n]), dim=-1)
            want = F.normalize(frames.mean(dim=0), dim=-1)
            assert torch.allclose(got[b], want, atol=1e-6)
            alone = model.encode_video(images[b:b + 1, :n], alphas[b:b + 1, :n])
            assert torch.allclose(got[b], alone[0], atol=1e-6)
        assert torch.allclose(model.encode_video(images, alphas, None),
                              model.encode_video(images, alphas, torch.ones(2, 4, dtype=torch.bool)), atol=0)
        with pytest.raises(InputError, match="no valid frame"):
            model.encode_video(images, alphas, torch.tensor([[True] * 4, [False] * 4]))


# --------------------------------------------------------------------------------------------------------------------
# Self-describing checkpoints

def test_save_and_reload_round_trips_bit_exactly(tmp_path):
    model, _ = _tiny(2)
    with torch.no_grad():
        model.clip.visual.conv1_alpha.weight.normal_(0, 0.1)
    model.use_alpha = False
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    model(torch.randn(1, 2, 3, 32, 32), None, None, get_tokenizer(16)(["x"]))[0].sum().backward()
    opt.step()
    model.eval()
    path = str(tmp_path / "run" / "ckpt.pt")
    save_checkpoint(path, model, step=7, train_cfg={"lr": 1e-3, "name": "t"}, optimizer=opt.state_dict(),
                    rng={"torch": torch.get_rng_state()})
    assert os.listdir(tmp_path / "run") == ["ckpt.pt"]  # atomic: no temporary left behind
    raw = torch.load(path, weights_only=True)
    assert raw["fda_version"] and raw["step"] == 7 and raw["use_alpha"] is False
    assert raw["model_cfg"] == model.model_cfg
    for loaded in (load_checkpoint(path)[0], load_alpha_clip(pretrained=path)[0]):
        assert loaded.use_alpha is False and loaded.model_cfg == model.model_cfg
        want, got = model.state_dict(), loaded.state_dict()
        assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
        images, alphas = torch.randn(2, 3, 3, 32, 32), torch.randn(2, 3, 1, 32, 32)
        with torch.no_grad():
            assert torch.equal(loaded.encode_video(images, alphas), model.encode_video(images, alphas))
    _, ckpt = load_checkpoint(path)
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(ckpt["optimizer"])
    assert ckpt["train_cfg"] == {"lr": 1e-3, "name": "t"}


def test_checkpoint_rejects_non_plain_and_reserved_entries(tmp_path):
    model, _ = _tiny(0)
    with pytest.raises(TypeError, match=r"rng.*numpy"):
        save_checkpoint(str(tmp_path / "a.pt"), model, rng={"np": np.zeros(3)})
    with pytest.raises(ValueError, match="state_dict"):
        save_checkpoint(str(tmp_path / "b.pt"), model, state_dict={})
    assert not os.listdir(tmp_path)
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not an fda checkpoint"):
        load_checkpoint(str(tmp_path / "other.pt"))


# --------------------------------------------------------------------------------------------------------------------
# Configs, names, tokenizer

def test_configs_and_names():
    names = list_models()
    assert {"fda-tiny", "ViT-B-32", "ViT-B-16", "ViT-L-14"} <= set(names)
    for name in names:
        doc = get_model_config(name)
        assert doc["name"] == name and doc["model_cfg"]["quick_gelu"] is True and "fda" in doc
    tiny = get_model_config("fda-tiny")["model_cfg"]
    assert tiny["embed_dim"] == 16 and tiny["vision_cfg"]["width"] // tiny["vision_cfg"]["head_width"] == 2
    assert get_model_config("ViT-B/16")["name"] == "ViT-B-16"
    assert get_model_config("ViT-B-32-quickgelu")["model_cfg"]["quick_gelu"] is True  # plain open_clip name
    with pytest.raises(ConfigError, match="fda-tiny") as err:
        get_model_config("ViT-Q-99")
    assert err.value.exit_code == 2
    with pytest.raises(ConfigError, match="ResNet"):
        get_model_config("RN50")
    with pytest.raises(ConfigError, match="no open_clip pretrained"):
        load_alpha_clip("fda-tiny", pretrained="openai")
    with pytest.raises(ConfigError, match="laion2b"):
        load_alpha_clip("ViT-B-32", pretrained="no-such-tag")
    with pytest.raises(ConfigError, match="nothing to build"):
        load_alpha_clip()


def test_tiny_model_shape_and_size():
    model = build_model(get_model_config("fda-tiny"))
    n = sum(p.numel() for p in model.parameters())
    assert 1.5e6 < n < 1.8e6
    assert model.image_size == 32 and model.embed_dim == 16 and model.use_alpha is True
    assert model.logit_scale is model.clip.logit_scale and model.logit_scale.ndim == 0
    assert torch.count_nonzero(model.clip.visual.conv1_alpha.weight) == 0


def test_tokenizer_works_offline():
    tok = get_tokenizer(16)
    out = tok(["a man is singing on stage", "x " * 40])
    assert out.dtype == torch.int64 and out.shape == (2, 16)
    assert out[0, 0] == 49406 and 49407 in out[0].tolist() and out[1, -1] == 49407


# --------------------------------------------------------------------------------------------------------------------
# Preprocessing

def test_shard_batch_to_inputs_normalises_like_the_official_pipeline():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 3, 32, 32, 3), dtype=np.uint8)
    masks = (rng.random((2, 3, 32, 32)) > 0.5).astype(np.uint8) * 255
    images, alphas = shard_batch_to_inputs(frames, masks, 32)
    assert images.shape == (2, 3, 3, 32, 32) and alphas.shape == (2, 3, 1, 32, 32)
    want = (torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float() / 255
            - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)
    assert torch.allclose(images, want, atol=1e-6)
    assert torch.allclose(alphas.unique(), torch.tensor([ALPHA_EMPTY, ALPHA_FULL]))
    assert ALPHA_FULL == pytest.approx(1.9231, abs=1e-4)
    tv = pytest.importorskip("torchvision.transforms")
    official = tv.Compose([tv.ToTensor(), tv.Normalize(0.5, 0.26)])  # ALPHA_CLIP.md section 4, same size
    assert torch.allclose(alphas[1, 2], official(masks[1, 2]), atol=1e-6)


def test_shard_batch_resize_keeps_frames_and_masks_aligned():
    frames = np.zeros((1, 2, 48, 64, 3), dtype=np.uint8)
    masks = np.zeros((1, 2, 48, 64), dtype=np.uint8)
    frames[..., 10:30, 20:40, :] = 255
    masks[..., 10:30, 20:40] = 255
    images, alphas = shard_batch_to_inputs(torch.from_numpy(frames), torch.from_numpy(masks), 32)
    assert images.shape == (1, 2, 3, 32, 32)
    img = images[0, 0, 0] * CLIP_STD[0] + CLIP_MEAN[0] > 0.5
    alp = alphas[0, 0, 0] > 0
    assert img.sum() > 50 and (img ^ alp).sum() <= 4  # same region, up to interpolation at the edges
    with pytest.raises(ValueError, match="uint8"):
        shard_batch_to_inputs(frames.astype(np.float32), masks, 32)


def test_random_resized_crop_flip_applies_one_geometry_per_clip():
    images = torch.zeros(3, 2, 3, 64, 64)
    alphas = torch.full((3, 2, 1, 64, 64), ALPHA_EMPTY)
    images[..., 8:24, 30:50] = 1.0
    alphas[..., 8:24, 30:50] = ALPHA_FULL
    out_i, out_a = random_resized_crop_flip(images, alphas, 32, generator=torch.Generator().manual_seed(0))
    assert out_i.shape == (3, 2, 3, 32, 32) and out_a.shape == (3, 2, 1, 32, 32)
    assert torch.equal(out_i[:, 0], out_i[:, 1]) and torch.equal(out_a[:, 0], out_a[:, 1])  # same for every frame
    for b in range(3):
        img, alp = out_i[b, 0, 0] > 0.5, out_a[b, 0, 0] > 0
        assert (img ^ alp).sum() <= 0.1 * max(int(img.sum()), 1) + 4
    again_i, again_a = random_resized_crop_flip(images, alphas, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again_i, out_i) and torch.equal(again_a, out_a)
