"""The alpha patch embedding: open_clip's ``VisionTransformer`` plus Alpha-CLIP's ``conv1_alpha``.

Alpha-CLIP (SunzeY/AlphaCLIP) adds ``conv1_alpha = Conv2d(1, width, patch, stride=patch, bias=False)`` beside the RGB
patch embedding ``conv1`` and sums the two, before the class token, the positional embedding and ``ln_pre``; the
rest of the forward is plain CLIP. open_clip 3.3.0 has no such channel, so :func:`add_alpha_channel` turns a built
``VisionTransformer`` into an :class:`AlphaVisionTransformer` in place (same parameters, same state-dict keys, plus
``conv1_alpha.weight``), zero-initialised so that the model equals plain CLIP exactly until it is trained or loaded.

The override copies open_clip's non-public ``_embeds`` with one added line; ``tests/test_model.py`` checks that a
zero alpha conv reproduces open_clip's own output, which catches an upstream change to that method.
"""

from typing import Optional

import torch
from open_clip.transformer import VisionTransformer, _expand_token
from torch import nn


class AlphaVisionTransformer(VisionTransformer):
    """open_clip's ViT with an extra alpha patch embedding (``conv1_alpha``); built by :func:`add_alpha_channel`.

    ``forward(x)`` with no alpha is open_clip's forward unchanged. ``forward_intermediates`` ignores alpha.
    """

    conv1_alpha: nn.Conv2d

    def _embeds(self, x: torch.Tensor, alpha: Optional[torch.Tensor] = None) -> torch.Tensor:  # type: ignore[override]
        x = self.conv1(x)  # [N, 3, H, W] -> [N, width, grid, grid]
        if alpha is not None:
            x = x + self.conv1_alpha(alpha.to(x.dtype))  # [N, 1, H, W] -> [N, width, grid, grid]
        x = x.reshape(x.shape[0], x.shape[1], -1)  # [N, width, grid ** 2]
        x = x.permute(0, 2, 1)  # [N, grid ** 2, width]
        x = torch.cat([_expand_token(self.class_embedding, x.shape[0]).to(x.dtype), x], dim=1)  # [N, grid**2+1, W]
        x = x + self.positional_embedding.to(x.dtype)
        x = self.patch_dropout(x)
        x = self.ln_pre(x)
        return x

    def forward(self, x: torch.Tensor, alpha: Optional[torch.Tensor] = None):  # type: ignore[override]
        """Image features.

        Args:
            x: CLIP-normalised images ``[N, 3, H, W]``.
            alpha: normalised alphas ``[N, 1, H, W]``, or None to skip the alpha conv (plain CLIP).

        Returns:
            ``[N, embed_dim]`` unnormalised (plus tokens when ``output_tokens``, as open_clip).
        """
        x = self._embeds(x, alpha)
        x = self.transformer(x)
        pooled, tokens = self._pool(x)
        if self.proj is not None:
            pooled = pooled @ self.proj
        if self.output_tokens:
            return pooled, tokens
        return pooled


def add_alpha_channel(visual: nn.Module) -> AlphaVisionTransformer:
    """Give an open_clip ``VisionTransformer`` a zero-initialised ``conv1_alpha``, in place.

    Call it after building the model and before loading weights that contain ``visual.conv1_alpha.weight``.

    Args:
        visual: ``model.visual`` of an open_clip ``CLIP`` with a ViT image tower.

    Returns:
        The same object, now an :class:`AlphaVisionTransformer`.

    Raises:
        TypeError: ``visual`` is not open_clip's ``VisionTransformer`` (ResNet and timm towers are not supported).
    """
    if isinstance(visual, AlphaVisionTransformer):
        return visual
    if type(visual) is not VisionTransformer:
        raise TypeError(f"the alpha channel needs open_clip's VisionTransformer, got {type(visual).__name__}")
    conv1 = visual.conv1
    conv = nn.Conv2d(1, conv1.out_channels, kernel_size=conv1.kernel_size, stride=conv1.stride, bias=False,
                     device=conv1.weight.device, dtype=conv1.weight.dtype)
    nn.init.zeros_(conv.weight)
    visual.__class__ = AlphaVisionTransformer
    visual.conv1_alpha = conv
    return visual  # type: ignore[return-value]
