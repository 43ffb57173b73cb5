from .attention_pool_wrapper import BackboneWithAttentionPool
from .clip_resnet import CLIPResNet, CLIPResNetWithAttention
from .clip_vit import CLIPVisionTransformer
from .open_clip_visual import OpenCLIPVisionBackbone  # open_clip imported when one is built

__all__ = ['BackboneWithAttentionPool', 'CLIPResNet', 'CLIPResNetWithAttention',
           'CLIPVisionTransformer', 'OpenCLIPVisionBackbone']
