"""DenseCLIP's mmseg plug-ins, registered into ``mmseg.registry.MODELS`` on import."""
from .backbones import (BackboneWithAttentionPool, CLIPResNet, CLIPResNetWithAttention,
                        CLIPVisionTransformer, OpenCLIPVisionBackbone)
from .clip_contrastive import CLIPContrastive, CLIPDataPreprocessor
from .context_decoder import ContextDecoder
from .identity_head import IdentityHead
from .open_clip_text import OpenCLIPTextContextEncoder  # open_clip imported when one is built
from .prompter import PreModelPrompter
from .segmentor import DenseCLIP
from .text_encoder import CLIPTextContextEncoder
from .zero_shot_segmentor import ZeroShotCLIPSegmentor

__all__ = [
    'BackboneWithAttentionPool', 'CLIPContrastive', 'CLIPDataPreprocessor', 'CLIPResNet',
    'CLIPResNetWithAttention', 'CLIPTextContextEncoder', 'CLIPVisionTransformer',
    'ContextDecoder', 'DenseCLIP', 'IdentityHead', 'OpenCLIPTextContextEncoder',
    'OpenCLIPVisionBackbone', 'PreModelPrompter', 'ZeroShotCLIPSegmentor'
]
