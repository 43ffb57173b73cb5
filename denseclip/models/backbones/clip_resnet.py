"""CLIP ResNet backbones for mmseg."""
from typing import Optional

import torch
from mmseg.registry import MODELS

from denseclip.clip.checkpoint import load_tower
from denseclip.clip.layers import check_resolution
from denseclip.clip.resnet import DENSE_EMBEDDINGS, ModifiedResNet, ResNetTrunk

STRIDE = 32  # of C5, the attention pool's grid


def check_input_size(x: torch.Tensor, stride: int, backbone: str) -> None:
    """Inputs smaller than the output stride leave an empty feature grid."""
    if min(x.shape[-2:]) < stride:
        raise ValueError(
            f'{backbone}: input {tuple(x.shape[-2:])} is smaller than its output stride '
            f'{stride}, so the feature grid (and the positional embedding resized to it) would '
            f'be empty; use crops / test scales of at least {stride} px')


def check_dense_embedding(choice: str, choices: tuple[str, ...]) -> None:
    """``model.backbone.dense_embedding`` must name one of the tower's dense embeddings."""
    if choice not in choices:
        raise ValueError(
            f'model.backbone.dense_embedding={choice!r}: expected one of {choices} '
            "('attention': DenseCLIP's dense map; 'value': MaskCLIP's value path, for zero-shot "
            'segmentation)')


@MODELS.register_module()
class CLIPResNet(ResNetTrunk):
    """CLIP's ResNet trunk as a backbone: returns C2..C5, no attention pool (CLIP + FPN).

    Args:
        layers: Bottleneck blocks per stage, ``(3, 4, 6, 3)`` for RN50, ``(3, 4, 23, 3)`` RN101.
        width: Stem width (64 for OpenAI's models).
        pretrained: A CLIP archive or state dict whose ``visual.*`` part is loaded by
            ``init_weights`` (its attention pool is ignored).
        with_cp: Checkpoint every bottleneck's activations in training (less memory, one more
            forward pass per block).
    """

    clip_image_tower = True  # loads a CLIP checkpoint's image tower (DenseCLIP's pretrained)

    def __init__(self, layers: tuple[int, int, int, int] = (3, 4, 6, 3), width: int = 64,
                 pretrained: Optional[str] = None, with_cp: bool = False):
        super().__init__(tuple(layers), width, with_cp)
        self.pretrained = pretrained

    def init_weights(self) -> None:
        if self.pretrained:
            load_tower(self, self.pretrained, 'visual', allowed_unexpected=('attnpool.*',))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        check_input_size(x, STRIDE, type(self).__name__)
        return tuple(self.forward_stages(x))


@MODELS.register_module()
class CLIPResNetWithAttention(ModifiedResNet):
    """CLIP's full ResNet tower as a backbone: C2..C5 plus ``(global, dense)`` embeddings.

    Besides CLIP's global embedding ``[B, D]`` the attention pool gives a dense embedding map
    ``[B, D, H/32, W/32]`` in the text embedding space, either DenseCLIP's (``'attention'``:
    every position is a query of the pool's attention) or MaskCLIP's (``'value'``: the value
    path ``c_proj(v_proj(x + pos))`` at every position, no mixing between positions; better for
    zero-shot segmentation). The global embedding is CLIP's in both. The positional embedding
    is stored for ``input_resolution`` and resized to the actual feature size at run time.

    Args:
        layers: Bottleneck blocks per stage.
        output_dim: Embedding dimension (1024 for RN50, 512 for RN101).
        input_resolution: Training resolution; the checkpoint's 7x7 positional grid is resized
            to ``input_resolution / 32`` when loading.
        width: Stem width.
        heads: Attention-pool heads; CLIP uses ``width * 32 / 64``.
        pretrained: A CLIP archive or state dict whose ``visual.*`` part ``init_weights`` loads.
        with_cp: Checkpoint every bottleneck's activations in training (less memory, one more
            forward pass per block); the attention pool is not checkpointed.
        dense_embedding: ``'attention'`` (DenseCLIP's, for training DenseCLIP) or ``'value'``
            (MaskCLIP's, for zero-shot segmentation); same parameters either way.
    """

    clip_image_tower = True  # loads a CLIP checkpoint's image tower (DenseCLIP's pretrained)

    def __init__(self, layers: tuple[int, int, int, int] = (3, 4, 6, 3), output_dim: int = 1024,
                 input_resolution: int = 224, width: int = 64, heads: Optional[int] = None,
                 pretrained: Optional[str] = None, with_cp: bool = False,
                 dense_embedding: str = 'attention'):
        check_resolution(input_resolution, STRIDE, f'{STRIDE} (the output stride)',
                         key='model.backbone.input_resolution')
        check_dense_embedding(dense_embedding, DENSE_EMBEDDINGS)
        super().__init__(tuple(layers), output_dim, heads or width * 32 // 64, input_resolution,
                         width, with_cp, dense=dense_embedding)
        self.pretrained = pretrained

    @property
    def embed_dim(self) -> int:
        """Width of the ``(global, dense)`` embeddings (read by DenseCLIP)."""
        return self.output_dim

    def init_weights(self) -> None:
        if self.pretrained:
            load_tower(self, self.pretrained, 'visual')

    def forward(self, x: torch.Tensor) -> tuple:
        """Returns ``(C2, C3, C4, C5, (global [B, D], dense [B, D, h, w]))``."""
        check_input_size(x, STRIDE, type(self).__name__)
        features = self.forward_stages(x)
        return (*features, self.attnpool(features[-1]))
