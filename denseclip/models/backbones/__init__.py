from .attention_pool_wrapper import BackboneWithAttentionPool
from .clip_resnet import CLIPResNet, CLIPResNetWithAttention
from .clip_vit import CLIPVisionTransformer

__all__ = ['BackboneWithAttentionPool', 'CLIPResNet', 'CLIPResNetWithAttention',
           'CLIPVisionTransformer']
