"""DenseCLIP's mmseg plug-ins, registered into ``mmseg.registry.MODELS`` on import."""
from .backbones import (BackboneWithAttentionPool, CLIPResNet, CLIPResNetWithAttention,
                        CLIPVisionTransformer)
from .clip_contrastive import CLIPContrastive, CLIPDataPreprocessor
from .context_decoder import ContextDecoder
from .identity_head import IdentityHead
from .prompter import PreModelPrompter
from .segmentor import DenseCLIP
from .text_encoder import CLIPTextContextEncoder
from .zero_shot_segmentor import ZeroShotCLIPSegmentor

__all__ = [
    'BackboneWithAttentionPool', 'CLIPContrastive', 'CLIPDataPreprocessor', 'CLIPResNet',
    'CLIPResNetWithAttention', 'CLIPTextContextEncoder', 'CLIPVisionTransformer',
    'ContextDecoder', 'DenseCLIP', 'IdentityHead', 'PreModelPrompter', 'ZeroShotCLIPSegmentor'
]
