"""The SFM image trunk: a timm VisionTransformer over 1-channel seismic sections.

SFM's encoder is an MAE ViT built from timm blocks (patch 16, ``qkv_bias``, LayerNorm eps 1e-6,
a class token and absolute position embeddings), so a timm ``VisionTransformer`` with
``in_chans=1`` has exactly SFM's encoder key names and an SFM checkpoint loads into it directly.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import partial

import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from seisbind.models.checkpoints import LoadReport, import_sfm_checkpoint
from seisbind.models.config import ImageTowerConfig


class ConvStemPatchEmbed(PatchEmbed):
    """timm's ``PatchEmbed`` with its one patch-sized convolution replaced by a convolutional stem.

    One stride-2 3x3 convolution (BatchNorm, ReLU) per factor 2 of ``patch_size``, widths doubling
    up to ``embed_dim / 2``, then a projection to ``embed_dim`` whose kernel and stride are the rest
    of the patch size (1x1 for a power of two; 5x5 for OpenFWI's 70 x 70 maps in patches of 10),
    as Xiao et al. (2021): the same token grid and output format as the patch embedding, so the
    rest of the ViT is untouched.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        in_chans, embed_dim = self.proj.in_channels, self.proj.out_channels
        patch = self.patch_size[0]
        halvings = (patch & -patch).bit_length() - 1  # factors of 2 in the patch size
        rest = patch >> halvings
        layers: list[nn.Module] = []
        width, channels = max(8, embed_dim // 2**halvings), in_chans
        for _ in range(halvings):
            width = min(width * 2, max(8, embed_dim // 2))
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.Conv2d(channels, embed_dim, rest, stride=rest))
        self.proj = nn.Sequential(*layers)


class ImageTrunk(VisionTransformer):
    """SFM-style ViT returning all tokens after the final norm: (batch, 1 + patches, width).

    Token 0 is the class token. With ``dynamic_img_size`` the position embeddings are
    interpolated to each input's patch grid; otherwise the input must be ``img_size``.
    """

    def __init__(self, config: ImageTowerConfig) -> None:
        super().__init__(
            img_size=config.img_hw,
            patch_size=config.patch_size,
            in_chans=config.in_chans,
            num_classes=0,
            global_pool="token",
            embed_dim=config.width,
            depth=config.depth,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            qkv_bias=True,
            class_token=True,
            dynamic_img_size=config.dynamic_img_size,
            drop_path_rate=config.drop_path_rate,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            embed_layer=ConvStemPatchEmbed if config.stem == "conv" else PatchEmbed,
        )
        self.tower_config = config

    @property
    def width(self) -> int:
        """Token width (the ViT embedding dimension)."""
        return self.embed_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Tokens of normalised images (batch, in_chans, H, W) -> (batch, 1 + patches, width)."""
        return self.forward_features(images.to(self.pos_embed.dtype))

    def trainable_tail(self, blocks: int) -> list[nn.Module]:
        """The last ``blocks`` transformer blocks and the final norm: what a partly locked trunk trains."""
        if not 0 <= blocks <= len(self.blocks):
            raise ValueError(f"unlocked_blocks for the image trunk must be in [0, {len(self.blocks)}]; got {blocks}")
        return ([*self.blocks[len(self.blocks) - blocks:], self.norm]) if blocks else []

    def load_sfm_checkpoint(
        self, path: str | os.PathLike, adapt_channels: bool = True, extra_inert_globals: Iterable[str] = ()
    ) -> LoadReport:
        """Load an SFM MAE checkpoint (``Base.pth``, ``Large.pth``, ``Base-512.pth``) from a local file."""
        return import_sfm_checkpoint(self, path, adapt_channels, extra_inert_globals)
