"""DenseCLIP's backbone outputs from each kind of open_clip image tower.

Each module here turns one kind of tower (``visual``, owned by
:class:`~denseclip.models.backbones.open_clip_visual.OpenCLIPVisionBackbone` and passed in) into
DenseCLIP's backbone contract: four feature maps for the neck, then
``(global [B, D], dense [B, D, h, w])`` in the joint embedding space. The global embedding is
open_clip's own ``encode_image``; only the pyramid and the dense embedding are added.
"""
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from denseclip.clip.layers import resize_grid_embedding

from .clip_resnet import check_input_size
from .clip_vit import _pyramid

#: Size of each ViT level relative to the ``1/patch_size`` token grid (fpn1..fpn4).
VIT_LEVEL_SCALES = (4, 2, 1, 0.5)


class ViTLevels(nn.Module):
    """open_clip's ``VisionTransformer``: the pyramid and dense embeddings of CLIPVisionTransformer.

    The blocks in ``out_indices`` give token maps at ``1/p`` (``p``: the patch size), turned
    into 4x, 2x, 1x and 0.5x that grid (``fpn1``..``fpn4``; strides 4/8/16/32 for ``p = 16``).
    Every patch token goes through ``ln_post`` and ``proj`` as the dense embedding; the global
    embedding is the tower's own pooling. The positional embedding is resized bilinearly to the
    input's grid at run time; inputs off the patch grid are zero-padded at the bottom and right
    and each level is cropped to at most ``ceil(side * scale / p)``.

    Args:
        width: Token width of the tower.
        layers: Its transformer blocks.
        out_indices: Four block indices whose outputs feed the pyramid.
        norm_cfg: Norm inside ``fpn1``.
    """

    def __init__(self, width: int, layers: int, out_indices: Sequence[int], norm_cfg: dict):
        super().__init__()
        if (len(set(out_indices)) != 4 or len(out_indices) != 4
                or not all(0 <= index < layers for index in out_indices)):
            raise ValueError(f'model.backbone.out_indices must name 4 different blocks of the '
                             f'{layers}, got {list(out_indices)}')
        self.out_indices = sorted(out_indices)
        self.fpn1, self.fpn2, self.fpn3, self.fpn4 = _pyramid(width, 16, norm_cfg)

    def forward(self, visual: nn.Module, x: torch.Tensor) -> tuple:
        patch = visual.conv1.kernel_size[0]
        check_input_size(x, 2 * patch, 'OpenCLIPVisionBackbone')  # fpn4: half the grid
        size = (x.shape[-2], x.shape[-1])
        x = F.pad(x, (0, -size[1] % patch, 0, -size[0] % patch))  # bottom and right
        grid = visual.conv1(x)  # [B, C, h, w]
        batch, _, height, width = grid.shape
        tokens = grid.flatten(2).transpose(1, 2)  # NCHW -> N(hw)C
        tokens = torch.cat([visual.class_embedding.expand(batch, 1, -1).to(tokens.dtype),
                            tokens], dim=1)  # [B, 1 + hw, C]
        position = resize_grid_embedding(visual.positional_embedding, 1, (height, width))
        tokens = visual.ln_pre(tokens + position.to(tokens.dtype))
        tokens, intermediates = visual.transformer.forward_intermediates(
            tokens, indices=self.out_indices)
        levels = (self.fpn1, self.fpn2, self.fpn3, self.fpn4)
        outputs = []
        for level, scale, feature in zip(levels, VIT_LEVEL_SCALES, intermediates):
            # [B, 1 + hw, C] -> [B, C, h, w], class token dropped
            feature = feature[:, 1:].transpose(1, 2).reshape(batch, -1, height, width)
            outputs.append(level(feature)[..., :math.ceil(size[0] * scale / patch),
                                          :math.ceil(size[1] * scale / patch)])
        pooled = visual._pool(tokens)[0] @ visual.proj  # open_clip's global embedding
        dense = visual.ln_post(tokens[:, 1:]) @ visual.proj  # [B, hw, D]
        outputs.append((pooled, dense.transpose(1, 2).reshape(batch, -1, height, width)))
        return tuple(outputs)


class TimmTrunkLevels(nn.Module):
    """open_clip's ``TimmModel`` (ConvNeXt): the trunk's last four stages are the pyramid.

    The global embedding is the tower's: the trunk's head (pooling, norm) then open_clip's
    projection. The dense embedding applies the same head at every position: each cell of the
    last map is pooled alone (a 1x1 map), normalised and projected.
    """

    def forward(self, visual: nn.Module, x: torch.Tensor) -> tuple:
        trunk = visual.trunk
        final, stages = trunk.forward_intermediates(x, indices=4)
        pooled = visual.head(trunk.forward_head(final))  # [B, D]
        batch, channels, height, width = final.shape
        cells = final.permute(0, 2, 3, 1).reshape(-1, channels, 1, 1)  # [B*h*w, C, 1, 1]
        dense = visual.head(trunk.forward_head(cells))  # [B*h*w, D]
        dense = dense.reshape(batch, height, width, -1).permute(0, 3, 1, 2)  # NHWC -> NCHW
        return (*stages, (pooled, dense))


class ResNetLevels(nn.Module):
    """open_clip's ``ModifiedResNet``: C2..C5, then DenseCLIP's attention pool over all positions.

    The tower's ``attnpool`` is replaced by :class:`~denseclip.clip.resnet.AttentionPool2d`
    (same parameters, the same global embedding, every spatial token as a query too).
    """

    def forward(self, visual: nn.Module, x: torch.Tensor) -> tuple:
        check_input_size(x, 32, 'OpenCLIPVisionBackbone')
        x = visual.stem(x)
        stages = []
        for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
            x = layer(x)
            stages.append(x)
        return (*stages, visual.attnpool(x))
