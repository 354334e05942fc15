"""Model input preprocessing, defined once: CLIP mean/std, alpha normalisation, shard batch -> model inputs.

Shards hold frames as uint8 RGB and masks as uint8 in {0, 255}, already ``size x size`` center crops; this module
turns them into what :class:`fda.model.video_clip.VideoAlphaCLIP` takes:

- images: ``(x / 255 - CLIP_MEAN) / CLIP_STD``, float ``[B, T, 3, S, S]``;
- alphas: ``(m / 255 - ALPHA_MEAN) / ALPHA_STD``, float ``[B, T, 1, S, S]``: a full mask is +1.9231 and an empty one
  -1.9231, as in the official Alpha-CLIP pipeline (``ToTensor -> Resize -> Normalize(0.5, 0.26)`` on a uint8 mask).

Any geometric change (resize, crop, flip) is applied to frames and masks together, so they stay aligned pixel for
pixel. Images are resized bicubic, masks bilinear, both antialiased (torchvision ``Resize`` semantics).
"""

import math
from typing import Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

CLIP_MEAN: Tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: Tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
ALPHA_MEAN: float = 0.5
ALPHA_STD: float = 0.26
ALPHA_FULL: float = (1.0 - ALPHA_MEAN) / ALPHA_STD  # a whole-frame mask after normalisation: 1.9231
ALPHA_EMPTY: float = (0.0 - ALPHA_MEAN) / ALPHA_STD  # an empty mask: -1.9231

ArrayLike = Union[np.ndarray, torch.Tensor]


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """CLIP-normalise float images in [0, 1].

    Args:
        images: float ``[..., 3, H, W]`` RGB in [0, 1].

    Returns:
        ``(images - CLIP_MEAN) / CLIP_STD``, same shape and dtype.
    """
    mean = torch.tensor(CLIP_MEAN, dtype=images.dtype, device=images.device).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images - mean) / std


def normalize_alphas(masks: torch.Tensor) -> torch.Tensor:
    """Alpha-CLIP-normalise float masks in [0, 1].

    Args:
        masks: float ``[..., 1, H, W]`` in [0, 1] (1 = the region to attend to).

    Returns:
        ``(masks - ALPHA_MEAN) / ALPHA_STD``, same shape and dtype.
    """
    return (masks - ALPHA_MEAN) / ALPHA_STD


def _resize_short_crop(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Resize the short side of ``x [N, C, H, W]`` to ``size`` and center-crop to ``size x size``."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode=mode, align_corners=False, antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[..., top:top + size, left:left + size]


def shard_batch_to_inputs(frames: ArrayLike, masks: ArrayLike, image_size: int,
                          device: Optional[Union[str, torch.device]] = None,
                          dtype: torch.dtype = torch.float32) -> Tuple[torch.Tensor, torch.Tensor]:
    """Turn a uint8 shard batch into normalised model inputs (the one place this happens).

    Frames that are not ``image_size`` square are resized (short side) and center-cropped like CLIP's test
    transform; masks get exactly the same geometry.

    Args:
        frames: uint8 ``[B, T, H, W, 3]`` RGB, numpy or torch.
        masks: uint8 ``[B, T, H, W]`` in {0, 255} (intermediate values are taken as soft alpha).
        image_size: the model's input side ``S`` in pixels.
        device: where the outputs live; the uint8 data is moved first (4x fewer bytes).
        dtype: floating dtype of the outputs.

    Returns:
        ``(images float [B, T, 3, S, S], alphas float [B, T, 1, S, S])``.

    Raises:
        ValueError: shapes or dtypes do not match the contract above.
    """
    f = torch.as_tensor(frames)
    m = torch.as_tensor(masks)
    if f.dim() != 5 or f.shape[-1] != 3:
        raise ValueError(f"frames must be [B, T, H, W, 3], got {tuple(f.shape)}")
    if m.shape != f.shape[:-1]:
        raise ValueError(f"masks must be [B, T, H, W] = {tuple(f.shape[:-1])}, got {tuple(m.shape)}")
    if f.dtype != torch.uint8 or m.dtype != torch.uint8:
        raise ValueError(f"frames and masks must be uint8, got {f.dtype} and {m.dtype}")
    if device is not None:
        f, m = f.to(device), m.to(device)
    b, t, h, w, _ = f.shape
    # [B, T, H, W, 3] -> [B*T, 3, H, W]; [B, T, H, W] -> [B*T, 1, H, W]
    images = f.reshape(b * t, h, w, 3).permute(0, 3, 1, 2).to(dtype).div_(255.0)
    alphas = m.reshape(b * t, 1, h, w).to(dtype).div_(255.0)
    if (h, w) != (image_size, image_size):
        images = _resize_short_crop(images, image_size, "bicubic").clamp_(0.0, 1.0)
        alphas = _resize_short_crop(alphas, image_size, "bilinear").clamp_(0.0, 1.0)
    images = normalize_images(images).reshape(b, t, 3, image_size, image_size)
    alphas = normalize_alphas(alphas).reshape(b, t, 1, image_size, image_size)
    return images.contiguous(), alphas.contiguous()


def _crop_params(h: int, w: int, scale: Tuple[float, float], ratio: Tuple[float, float],
                 generator: Optional[torch.Generator]) -> Tuple[int, int, int, int]:
    """torchvision ``RandomResizedCrop.get_params`` with an explicit generator: ``(top, left, height, width)``."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(scale[0], scale[1], generator=generator))
        aspect = math.exp(float(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator)))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
            return top, left, ch, cw
    # fallback: the largest center crop within the ratio range
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def random_resized_crop_flip(images: torch.Tensor, alphas: Optional[torch.Tensor], size: int, *,
                             scale: Tuple[float, float] = (0.5, 1.0),
                             ratio: Tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0), flip_p: float = 0.5,
                             generator: Optional[torch.Generator] = None
                             ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Joint training augmentation: one random resized crop and flip per clip, shared by its frames and masks.

    This is X-Pool/FDACLIP's ``RandomResizedCrop(size, scale=(0.5, 1.0))`` + horizontal flip applied once to the
    whole clip, with the masks given the identical geometry. Apply it to the outputs of
    :func:`shard_batch_to_inputs` (normalisation is affine, so it commutes with the interpolation).

    Args:
        images: float ``[B, T, 3, H, W]``.
        alphas: float ``[B, T, 1, H, W]`` or None.
        size: output side in pixels.
        scale: range of the crop area as a fraction of the frame area.
        ratio: range of the crop aspect ratio (width / height).
        flip_p: probability of a horizontal flip, per clip.
        generator: source of randomness (reproducible runs).

    Returns:
        ``(images [B, T, 3, size, size], alphas [B, T, 1, size, size] or None)``.
    """
    if images.dim() != 5:
        raise ValueError(f"images must be [B, T, 3, H, W], got {tuple(images.shape)}")
    if alphas is not None and (alphas.shape[:2] != images.shape[:2] or alphas.shape[-2:] != images.shape[-2:]):
        raise ValueError(f"alphas {tuple(alphas.shape)} do not match images {tuple(images.shape)}")
    b, t, _, h, w = images.shape
    out_i, out_a = [], []
    for i in range(b):
        top, left, ch, cw = _crop_params(h, w, scale, ratio, generator)
        flip = float(torch.rand(1, generator=generator)) < flip_p
        crop = images[i, :, :, top:top + ch, left:left + cw]  # [T, 3, ch, cw]
        crop = F.interpolate(crop, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        out_i.append(crop.flip(-1) if flip else crop)
        if alphas is not None:
            acrop = alphas[i, :, :, top:top + ch, left:left + cw]  # [T, 1, ch, cw]
            acrop = F.interpolate(acrop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            out_a.append(acrop.flip(-1) if flip else acrop)
    return torch.stack(out_i), (torch.stack(out_a) if alphas is not None else None)
