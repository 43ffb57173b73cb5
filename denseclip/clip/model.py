"""The CLIP model: both towers, zero-shot logits and the contrastive loss."""
import math
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import ModifiedResNet
from .text import TextTransformer
from .vit import VisionTransformer


class CLIP(TextTransformer):
    """OpenAI's CLIP with the same parameter names, so its state dicts load exactly.

    It *is* the text tower (OpenAI keeps the text parameters at the top level of the state
    dict) and holds the image tower as ``visual``.
    """

    def __init__(self, embed_dim: int, image_resolution: int,
                 vision_layers: Union[int, tuple[int, int, int, int]], vision_width: int,
                 vision_patch_size: int | None, context_length: int, vocab_size: int,
                 transformer_width: int, transformer_heads: int, transformer_layers: int):
        super().__init__(context_length, vocab_size, transformer_width, transformer_heads,
                         transformer_layers, embed_dim)
        if isinstance(vision_layers, (tuple, list)):
            self.visual = ModifiedResNet(tuple(vision_layers), embed_dim,
                                         heads=vision_width * 32 // 64,
                                         input_resolution=image_resolution, width=vision_width)
        else:
            self.visual = VisionTransformer(image_resolution, vision_patch_size, vision_width,
                                            vision_layers, heads=vision_width // 64,
                                            output_dim=embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def reset_image_parameters(self) -> None:
        """OpenAI's initialisation of a ResNet image tower, for training from scratch.

        The attention pool's projections are drawn with std ``in_features ** -0.5`` and the
        last BN of every bottleneck starts at zero, so each block starts as the identity.
        The ViT tower is initialised this way by its constructor already. Not called by the
        constructor: models built for loading weights keep their construction as it was.
        """
        if not isinstance(self.visual, ModifiedResNet):
            return
        pool = self.visual.attnpool
        for projection in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
            nn.init.normal_(projection.weight, std=projection.in_features ** -0.5)
        for stage in (self.visual.layer1, self.visual.layer2, self.visual.layer3,
                      self.visual.layer4):
            for block in stage:
                nn.init.zeros_(block.bn3.weight)

    @property
    def dtype(self) -> torch.dtype:
        return self.text_projection.dtype

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """Image embeddings ``[B, embed_dim]`` (not normalised)."""
        return self.visual(image.to(self.dtype))

    def forward(self, image: torch.Tensor,
                text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero-shot logits ``(image -> text [B, N], text -> image [N, B])``."""
        image_features = F.normalize(self.encode_image(image), dim=-1)
        text_features = F.normalize(self.encode_text(text), dim=-1)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()


def contrastive_loss(logits_per_image: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss over a square ``[N, N]`` similarity matrix.

    For one process; :func:`denseclip.clip.loss.gathered_contrastive_loss` scores each rank's
    pairs against the batch of all ranks.
    """
    if logits_per_image.ndim != 2 or logits_per_image.shape[0] != logits_per_image.shape[1]:
        raise ValueError('the contrastive loss needs a square [N, N] logit matrix, got '
                         f'{tuple(logits_per_image.shape)}')
    labels = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)
    return (F.cross_entropy(logits_per_image, labels)
            + F.cross_entropy(logits_per_image.t(), labels)) / 2
