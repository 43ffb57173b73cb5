"""CLIP Vision Transformer backbone for mmseg."""
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmseg.registry import MODELS
from torch import nn

from denseclip.clip.checkpoint import load_tower
from denseclip.clip.layers import check_resolution, forward_block
from denseclip.clip.resnet import DENSE_EMBEDDINGS  # for the ViT: the last block, or its value path
from denseclip.clip.vit import VisionTransformer, value_path

from .clip_resnet import check_dense_embedding, check_input_size


def _pyramid(width: int, patch_size: int, norm_cfg: dict) -> list[nn.Module]:
    """Four levels at strides 4, 8, 16, 32 from the ``1/patch_size`` token map.

    Every level starts with ``GroupNorm(1, width)`` (a LayerNorm over channels and space).
    """
    def group_norm() -> nn.GroupNorm:
        return nn.GroupNorm(1, width)

    def up2() -> nn.ConvTranspose2d:
        return nn.ConvTranspose2d(width, width, kernel_size=2, stride=2)

    if patch_size == 16:
        return [
            nn.Sequential(group_norm(), up2(), build_norm_layer(norm_cfg, width)[1], nn.GELU(),
                          up2()),                               # 1/16 -> 1/4
            nn.Sequential(group_norm(), up2()),                 # 1/16 -> 1/8
            group_norm(),                                       # 1/16
            nn.Sequential(group_norm(), nn.MaxPool2d(2)),       # 1/16 -> 1/32
        ]
    if patch_size == 8:
        return [
            nn.Sequential(group_norm(), up2()),                 # 1/8 -> 1/4
            group_norm(),                                       # 1/8
            nn.Sequential(group_norm(), nn.MaxPool2d(2)),       # 1/8 -> 1/16
            nn.Sequential(group_norm(), nn.MaxPool2d(4)),       # 1/8 -> 1/32
        ]
    raise ValueError(f'CLIPVisionTransformer builds its pyramid for patch_size 16 or 8, '
                     f'got {patch_size}')


#: Output strides of ``fpn1``..``fpn4``.
LEVEL_STRIDES = (4, 8, 16, 32)


def crop_to_input(feature: torch.Tensor, size: tuple[int, int], stride: int) -> torch.Tensor:
    """Keeps the ``ceil(size / stride)`` rows and columns that cover an unpadded input."""
    return feature[..., :math.ceil(size[0] / stride), :math.ceil(size[1] / stride)]


@MODELS.register_module()
class CLIPVisionTransformer(VisionTransformer):
    """CLIP's ViT as a backbone: a 4-level feature pyramid plus optional dense embeddings.

    Differs from CLIP's tower in three ways: features of the blocks in ``out_indices`` are
    reshaped to maps and turned into strides 4/8/16/32 (``fpn1``..``fpn4``); with
    ``get_embeddings`` every token goes through ``ln_post`` and ``proj``, giving
    ``(global [B, D], dense [B, D, H/p, W/p])``; and, as in the released DenseCLIP models, the
    class position of the positional embedding also gets ``class_embedding`` added.

    The dense embeddings are the patch tokens of the last block (``dense_embedding=
    'attention'``), or, as MaskCLIP takes them for zero-shot segmentation (``'value'``), the
    last block run with its attention reduced to the value path
    (:func:`~denseclip.clip.vit.value_path`: no mixing between tokens). The global embedding
    (the class token) is CLIP's either way.

    An input whose sides are not multiples of the patch size is zero-padded at the bottom and
    right to the patch grid (the patch convolution would otherwise drop the last pixels), and
    each level is cropped back to ``ceil(side / stride)``, the grid a convolutional backbone
    gives; inputs on the grid are unchanged.

    Args:
        input_resolution: Training resolution; the checkpoint's grid is resized to
            ``input_resolution / patch_size`` when loading.
        patch_size: 16 or 8.
        width: Token width.
        layers: Transformer blocks.
        heads: Attention heads.
        output_dim: Embedding dimension.
        out_indices: Four block indices whose outputs feed the pyramid.
        drop_path_rate: Stochastic depth, rising linearly to this rate over the blocks.
        get_embeddings: Also return ``(global, dense)`` embeddings; without them the tower has
            no ``ln_post`` / ``proj``.
        norm_cfg: Norm inside ``fpn1`` (patch 16): ``BN`` here, ``SyncBN`` in multi-GPU configs.
        pretrained: A CLIP archive or state dict whose ``visual.*`` part ``init_weights`` loads.
        with_cp: Checkpoint every transformer block's activations in training (less memory, one
            more forward pass per block).
        dense_embedding: ``'attention'`` (the last block's patch tokens) or ``'value'`` (its
            value path, MaskCLIP's; needs ``get_embeddings``).
    """

    clip_image_tower = True  # loads a CLIP checkpoint's image tower (DenseCLIP's pretrained)

    def __init__(self, input_resolution: int = 224, patch_size: int = 16, width: int = 768,
                 layers: int = 12, heads: int = 12, output_dim: int = 512,
                 out_indices: Sequence[int] = (3, 5, 7, 11), drop_path_rate: float = 0.0,
                 get_embeddings: bool = False, norm_cfg: Optional[dict] = None,
                 pretrained: Optional[str] = None, with_cp: bool = False,
                 dense_embedding: str = 'attention'):
        check_resolution(input_resolution, patch_size, f'patch_size={patch_size}',
                         key='model.backbone.input_resolution')
        check_dense_embedding(dense_embedding, DENSE_EMBEDDINGS)
        if dense_embedding != 'attention' and not get_embeddings:
            raise ValueError(f'model.backbone.dense_embedding={dense_embedding!r} needs '
                             'get_embeddings=True (without it there are no dense embeddings)')
        super().__init__(input_resolution, patch_size, width, layers, heads, output_dim,
                         drop_path_rate, with_cp)
        if (len(set(out_indices)) != 4 or len(out_indices) != 4
                or not all(0 <= index < layers for index in out_indices)):
            raise ValueError(f'out_indices must name 4 different blocks of the {layers}, got '
                             f'{list(out_indices)}')
        self.out_indices = tuple(out_indices)
        self.get_embeddings = get_embeddings
        if not get_embeddings:
            # as in the released CLIP+FPN baseline: no unused parameters (DDP would reject them)
            self.ln_post = self.proj = None
        self.pretrained = pretrained
        self.dense_embedding = dense_embedding
        # chosen once here, so forward does not branch on ``dense_embedding``
        self.dense_tokens = dict(attention=self.last_block_tokens,
                                 value=self.value_path_tokens)[dense_embedding]
        levels = _pyramid(width, patch_size, norm_cfg or dict(type='BN', requires_grad=True))
        self.fpn1, self.fpn2, self.fpn3, self.fpn4 = levels

    def position_embedding(self, height: int, width: int) -> torch.Tensor:
        embedding = super().position_embedding(height, width)
        return torch.cat([embedding[:1] + self.class_embedding, embedding[1:]])

    @property
    def embed_dim(self) -> Optional[int]:
        """Width of the ``(global, dense)`` embeddings; None without ``get_embeddings``."""
        return self.output_dim if self.get_embeddings else None

    def init_weights(self) -> None:
        if self.pretrained:
            unused = () if self.get_embeddings else ('ln_post.*', 'proj')
            load_tower(self, self.pretrained, 'visual', allowed_missing=('fpn*',),
                       allowed_unexpected=unused)

    def last_block_tokens(self, embedded: torch.Tensor, last_input: torch.Tensor) -> torch.Tensor:
        """The projected patch tokens of the last block, ``[B, H*W, D]`` (DenseCLIP's)."""
        return embedded[:, 1:]

    def value_path_tokens(self, embedded: torch.Tensor, last_input: torch.Tensor) -> torch.Tensor:
        """The last block's value path on its input ``[1 + H*W, B, C]``, projected:
        ``[B, H*W, D]`` (MaskCLIP's)."""
        tokens = value_path(self.transformer.resblocks[-1], last_input[1:])
        return self.project(tokens.transpose(0, 1))

    def forward(self, x: torch.Tensor) -> tuple:
        """Returns 4 maps at strides 4..32, then ``(global, dense)`` if ``get_embeddings``."""
        check_input_size(x, 32, type(self).__name__)  # fpn4: stride 32
        size = (x.shape[-2], x.shape[-1])
        pad_h, pad_w = (-side % self.patch_size for side in size)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))  # bottom and right, to the patch grid
        tokens, (height, width) = self.embed(x)  # [1 + H*W, B, C]
        maps = []
        for index, block in enumerate(self.transformer.resblocks):
            last_input = tokens  # of the last block, once the loop ends
            tokens = forward_block(block, tokens, self.transformer.with_cp)
            if index in self.out_indices:
                # [1 + H*W, B, C] -> [B, C, H, W], class token dropped
                maps.append(tokens[1:].permute(1, 2, 0).reshape(x.shape[0], -1, height, width))
        levels = (self.fpn1, self.fpn2, self.fpn3, self.fpn4)
        outputs = [crop_to_input(level(feature), size, stride)
                   for level, feature, stride in zip(levels, maps, LEVEL_STRIDES)]
        if self.get_embeddings:
            embedded = self.project(tokens.transpose(0, 1))  # [B, 1 + H*W, D]
            dense = self.dense_tokens(embedded, last_input)  # [B, H*W, D]
            dense = dense.transpose(1, 2).reshape(x.shape[0], -1, height, width)
            outputs.append((embedded[:, 0], dense))
        return tuple(outputs)
