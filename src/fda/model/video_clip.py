"""The video model: Alpha-CLIP per frame, mean-pooled over valid frames (CLIP4Clip's meanP), plus the text tower.

``VideoAlphaCLIP`` wraps an open_clip ``CLIP`` whose ``visual`` carries the alpha patch embedding
(:mod:`fda.model.alpha_vit`). ``use_alpha`` is the baseline switch: with it off the same weights run as plain CLIP
(masks ignored), CLIP4Clip's meanP baseline, so every measurement can show what the masks add.
"""

import copy
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from fda.errors import InputError
from fda.model.alpha_vit import AlphaVisionTransformer


class VideoAlphaCLIP(nn.Module):
    """Alpha-CLIP for text-video retrieval.

    Attributes:
        clip: the wrapped open_clip ``CLIP``; ``clip.visual`` is an :class:`AlphaVisionTransformer`, and
            ``clip.transformer``, ``clip.token_embedding``, ``clip.positional_embedding``, ``clip.ln_final`` and
            ``clip.text_projection`` are the text tower.
        model_cfg: the config document the model was built from: ``{"name", "model_cfg": {open_clip schema},
            "fda": {...}}``.
        use_alpha: the baseline switch; when False every alpha argument is ignored (plain CLIP).
    """

    def __init__(self, clip: nn.Module, model_cfg: Dict[str, Any], use_alpha: bool = True) -> None:
        """Wrap ``clip``.

        Args:
            clip: an open_clip ``CLIP`` whose ``visual`` was patched by :func:`fda.model.alpha_vit.add_alpha_channel`.
            model_cfg: the config document (kept as a deep copy, saved in checkpoints).
            use_alpha: feed the alpha channel (False: the plain CLIP baseline).
        """
        super().__init__()
        if not isinstance(clip.visual, AlphaVisionTransformer):
            raise TypeError("clip.visual must be an AlphaVisionTransformer (call add_alpha_channel first)")
        self.clip = clip
        self.model_cfg = copy.deepcopy(model_cfg)
        self.use_alpha = bool(use_alpha)

    @property
    def name(self) -> str:
        """The config name (``fda-tiny``, ``ViT-B-16``, ...)."""
        return str(self.model_cfg.get("name", "?"))

    @property
    def image_size(self) -> int:
        """Input side ``S`` in pixels."""
        size = self.clip.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def context_length(self) -> int:
        """Text tokens per caption."""
        return int(self.clip.context_length)

    @property
    def embed_dim(self) -> int:
        """Dimension ``D`` of the joint embedding."""
        return int(self.clip.text_projection.shape[-1])

    @property
    def logit_scale(self) -> nn.Parameter:
        """The log temperature, as open_clip (``logit_scale.exp()`` multiplies cosine similarities)."""
        return self.clip.logit_scale

    def alpha_parameters(self) -> List[nn.Parameter]:
        """The alpha patch embedding's parameters (``clip.visual.conv1_alpha``), for their own optimiser group."""
        return list(self.clip.visual.conv1_alpha.parameters())

    def encode_image(self, images: torch.Tensor, alphas: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Per-image features.

        Args:
            images: CLIP-normalised ``[N, 3, S, S]``.
            alphas: normalised alphas ``[N, 1, S, S]``; None, or ``use_alpha`` False, skips the alpha conv.

        Returns:
            ``[N, D]``, unnormalised (like open_clip's ``encode_image``).
        """
        dtype = self.clip.visual.conv1.weight.dtype
        alpha = alphas.to(dtype) if (alphas is not None and self.use_alpha) else None
        return self.clip.visual(images.to(dtype), alpha)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Caption features.

        Args:
            tokens: int64 ``[N, L]`` from the tokenizer.

        Returns:
            ``[N, D]``, unnormalised.
        """
        return self.clip.encode_text(tokens)

    def encode_video(self, images: torch.Tensor, alphas: Optional[torch.Tensor] = None,
                     valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Clip features: L2-normalised frame features averaged over valid frames, L2-normalised again (meanP).

        Padded frames are not encoded at all, so they cannot change the result.

        Args:
            images: CLIP-normalised ``[B, T, 3, S, S]``.
            alphas: normalised alphas ``[B, T, 1, S, S]``, or None; ignored when ``use_alpha`` is False.
            valid: bool ``[B, T]``, True for real frames; None means all.

        Returns:
            ``[B, D]``, unit length.

        Raises:
            InputError: a clip has no valid frame.
        """
        b, t = images.shape[:2]
        if valid is None:
            valid = torch.ones(b, t, dtype=torch.bool, device=images.device)
        valid = valid.to(device=images.device, dtype=torch.bool)
        counts = valid.sum(dim=1)  # [B]
        if bool((counts == 0).any()):
            empty = torch.nonzero(counts == 0).flatten().tolist()
            raise InputError(f"encode_video: clip(s) {empty} have no valid frame")
        flat_valid = valid.reshape(b * t)
        idx = torch.nonzero(flat_valid).flatten()  # indices of real frames in [B*T]
        frames = images.reshape(b * t, *images.shape[2:]).index_select(0, idx)  # [B, T, 3, S, S] -> [V, 3, S, S]
        masks = None
        if alphas is not None and self.use_alpha:
            masks = alphas.reshape(b * t, *alphas.shape[2:]).index_select(0, idx)  # [V, 1, S, S]
        feats = F.normalize(self.encode_image(frames, masks), dim=-1)  # [V, D]
        clip_of = torch.div(idx, t, rounding_mode="floor")  # [V]: which clip each frame belongs to
        summed = torch.zeros(b, feats.shape[-1], dtype=feats.dtype, device=feats.device).index_add(0, clip_of, feats)
        pooled = summed / counts.to(feats.dtype).unsqueeze(-1)  # [B, D]
        return F.normalize(pooled, dim=-1)

    def forward(self, images: torch.Tensor, alphas: Optional[torch.Tensor], valid: Optional[torch.Tensor],
                tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both towers for contrastive training.

        Args:
            images: ``[B, T, 3, S, S]``.
            alphas: ``[B, T, 1, S, S]`` or None.
            valid: bool ``[B, T]`` or None.
            tokens: ``[B, L]`` (or ``[K, L]`` captions in any number).

        Returns:
            ``(video [B, D] unit length, text [K, D] unit length, logit_scale.exp() scalar)``.
        """
        video = self.encode_video(images, alphas, valid)
        text = F.normalize(self.encode_text(tokens), dim=-1)
        return video, text, self.logit_scale.exp()

    def extra_repr(self) -> str:
        return f"name={self.name}, use_alpha={self.use_alpha}, image_size={self.image_size}"
