"""DenseCLIP on any backbone: an attention pool projects the last feature map to text space."""
import torch
from mmseg.registry import MODELS
from mmengine.model import BaseModule

from denseclip.clip.resnet import AttentionPool2d


@MODELS.register_module()
class BackboneWithAttentionPool(BaseModule):
    """Wraps any mmseg backbone and adds ``(global, dense)`` embeddings (the paper's Table 5).

    A randomly initialised CLIP-style attention pool (``attnpool``) maps the last feature map
    into the text embedding space, so a non-CLIP backbone (ImageNet ResNet, Swin) can be matched
    against CLIP text embeddings like CLIP's own ResNet.

    Args:
        backbone: Config of the wrapped backbone (its own ``init_cfg`` loads its weights).
        in_channels: Channels of the wrapped backbone's last output.
        output_dim: Embedding dimension, that of the text encoder it is matched with (512 for
            CLIP ViT-B/16's).
        num_heads: Heads of the attention pool.
        spacial_dim: Side of the stored positional grid (crop size / 32); resized at run time.
    """

    def __init__(self, backbone: dict, in_channels: int = 2048, output_dim: int = 512,
                 num_heads: int = 32, spacial_dim: int = 16, init_cfg=None):
        super().__init__(init_cfg)
        self.backbone = MODELS.build(backbone)
        self.attnpool = AttentionPool2d(spacial_dim, in_channels, num_heads, output_dim)
        self.embed_dim = output_dim  # of the (global, dense) embeddings; read by DenseCLIP

    def forward(self, x: torch.Tensor) -> tuple:
        """Returns the wrapped backbone's outputs, then ``(global [B, D], dense [B, D, h, w])``."""
        features = tuple(self.backbone(x))
        last = features[-1]
        if last.shape[1] != self.attnpool.k_proj.in_features:
            raise ValueError(f'the wrapped backbone ends with {last.shape[1]} channels but '
                             f'in_channels={self.attnpool.k_proj.in_features}')
        return (*features, self.attnpool(last))
