"""Any open_clip image tower (ViT, ModifiedResNet, timm ConvNeXt) as DenseCLIP's backbone."""
import os
from collections.abc import Sequence
from typing import Optional

import torch
from mmengine.model import BaseModule
from mmseg.registry import MODELS

from denseclip.clip.checkpoint import load_into
from denseclip.clip.open_clip_weights import import_open_clip, model_config, read_towers
from denseclip.clip.resnet import AttentionPool2d

from .open_clip_levels import ResNetLevels, TimmTrunkLevels, ViTLevels


def vision_config(model_name: str, input_resolution: int) -> dict:
    """open_clip's vision config of ``model_name`` for DenseCLIP's training resolution.

    Nothing is downloaded (``timm_model_pretrained`` off); patch dropout is off, since every
    patch needs a dense embedding.
    """
    config = model_config(model_name, 'model.backbone.model_name')
    vision = dict(config['vision_cfg'], image_size=input_resolution, patch_dropout=0.0,
                  timm_model_pretrained=False)
    if vision.get('attentional_pool'):
        raise ValueError(f'model.backbone.model_name={model_name!r}: its image tower pools with '
                         'an attentional pooler (CoCa), which gives no dense embedding')
    return dict(config, vision_cfg=vision)


@MODELS.register_module()
class OpenCLIPVisionBackbone(BaseModule):
    """An open_clip model's image tower, built from its name, returning DenseCLIP's outputs.

    ``visual`` is the tower that ``open_clip.create_model(model_name)`` builds (architecture
    only, nothing downloaded), at ``input_resolution``; its global embedding is open_clip's
    ``encode_image``. Added per kind of tower (:mod:`.open_clip_levels`):

    - ViT (OpenAI, LAION, DataComp): a pyramid from the blocks in ``out_indices`` as for
      CLIP's ViT-B/16 (``levels.fpn1``..``fpn4``), and every patch token through ``ln_post``
      and ``proj`` as the dense embedding.
    - ModifiedResNet (RN50, ...): C2..C5, and the attention pool over all positions.
    - timm trunks with four stages (ConvNeXt-CLIP): the stages, and the image head applied
      at every position of the last one.

    Args:
        model_name: An open_clip architecture (``open_clip.list_models()``): ``'ViT-B-16'``,
            ``'ViT-L-14'``, ``'convnext_base_w'``, ``'RN50'``.
        input_resolution: Training resolution; the checkpoint's positional grid is resized to
            it when loading (and to each input's grid at run time).
        out_indices: ViTs only: four block indices feeding the pyramid; default: the last
            block of each quarter of the tower (5, 11, 17, 23 for 24 blocks; the configs state
            DenseCLIP's 3, 5, 7, 11 for 12).
        norm_cfg: ViTs only: the norm inside ``fpn1`` (``SyncBN`` in multi-GPU configs).
        pretrained: An open_clip checkpoint (``.bin``, ``.pt``, ``.safetensors``) whose image
            tower ``init_weights`` loads.
        with_cp: Checkpoint the activations of every transformer block (ViTs) or stage block
            (timm trunks) in training; open_clip's ResNets have none (an error).
    """

    clip_image_tower = True  # loads the image tower of an open_clip checkpoint

    def __init__(self, model_name: str = 'ViT-B-16', input_resolution: int = 512,
                 out_indices: Optional[Sequence[int]] = None, norm_cfg: Optional[dict] = None,
                 pretrained: Optional[str] = None, with_cp: bool = False, init_cfg=None):
        super().__init__(init_cfg)
        open_clip = import_open_clip('model.backbone (OpenCLIPVisionBackbone)')
        config = vision_config(model_name, input_resolution)
        self.visual = open_clip.model._build_vision_tower(
            config['embed_dim'], config['vision_cfg'], config.get('quick_gelu', False))
        self.model_name = model_name
        self.embed_dim = config['embed_dim']  # of the (global, dense) embeddings
        self.pretrained = pretrained
        self.levels, self.out_channels = self._levels(model_name, out_indices, norm_cfg)
        if with_cp and isinstance(self.levels, ResNetLevels):
            raise ValueError(f'model.backbone.with_cp: open_clip\'s ResNet ({model_name!r}) has '
                             'no activation checkpointing; use CLIPResNetWithAttention for it')
        self.visual.set_grad_checkpointing(with_cp)

    def _levels(self, model_name: str, out_indices: Optional[Sequence[int]],
                norm_cfg: Optional[dict]) -> tuple[torch.nn.Module, tuple[int, ...]]:
        """The module that makes DenseCLIP's outputs from this kind of tower, and its widths."""
        open_clip = import_open_clip('model.backbone (OpenCLIPVisionBackbone)')
        visual = self.visual
        if isinstance(visual, open_clip.transformer.VisionTransformer):
            width, layers = visual.class_embedding.shape[0], len(visual.transformer.resblocks)
            out_indices = out_indices or [layers * quarter // 4 - 1 for quarter in (1, 2, 3, 4)]
            levels = ViTLevels(width, layers, out_indices,
                               norm_cfg or dict(type='BN', requires_grad=True))
            return levels, (width,) * 4
        if isinstance(visual, open_clip.modified_resnet.ModifiedResNet):
            pool = visual.attnpool
            visual.attnpool = AttentionPool2d(
                visual.image_size // 32, pool.k_proj.in_features, pool.num_heads,
                pool.c_proj.out_features)
            width = visual.layer1[0].conv1.in_channels
            return ResNetLevels(), tuple(width * 4 * 2**stage for stage in range(4))
        return self._timm_levels(model_name), tuple(
            info['num_chs'] for info in visual.trunk.feature_info[-4:])

    def _timm_levels(self, model_name: str) -> TimmTrunkLevels:
        """Checks that a timm trunk has the four stages and the pooled head DenseCLIP needs."""
        trunk = getattr(self.visual, 'trunk', None)
        info = getattr(trunk, 'feature_info', [])
        strides = [level['reduction'] for level in info[-4:]]
        if strides != [4, 8, 16, 32] or not hasattr(trunk, 'forward_intermediates'):
            raise ValueError(
                f'model.backbone.model_name={model_name!r}: its timm image tower '
                f'{type(trunk).__name__} does not give four stages at strides 4/8/16/32 '
                f'(feature strides {strides}); supported: ViTs, ModifiedResNets and timm '
                'ConvNeXt-style trunks')
        if 'pool' in dict(self.visual.head.named_children()):
            raise ValueError(f'model.backbone.model_name={model_name!r}: its image head pools '
                             'with attention, which gives no embedding per position')
        return TimmTrunkLevels()

    def init_weights(self) -> None:
        if self.pretrained:
            visual, _ = read_towers(self.pretrained)
            load_into(self.visual, visual, source=os.fspath(self.pretrained),
                      grid_positions=('positional_embedding', 'attnpool.positional_embedding'))
        else:
            super().init_weights()

    def forward(self, x: torch.Tensor) -> tuple:
        """Returns 4 feature maps, then ``(global [B, D], dense [B, D, h, w])``."""
        return self.levels(self.visual, x)
