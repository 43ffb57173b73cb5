"""CLIP's modified ResNet image tower."""
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .layers import check_resolution, forward_block, resize_grid_embedding


class Bottleneck(nn.Module):
    """ResNet bottleneck, anti-aliased: strided blocks average-pool before the third conv.

    The downsample branch pools too, so its convolution and norm stay at keys
    ``downsample.0`` / ``downsample.1`` as in OpenAI's checkpoints.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Identity()
        if stride > 1 or inplanes != out_planes:
            self.downsample = nn.Sequential(OrderedDict([
                ('-1', nn.AvgPool2d(stride)),
                ('0', nn.Conv2d(inplanes, out_planes, 1, bias=False)),
                ('1', nn.BatchNorm2d(out_planes)),
            ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        return self.relu(out + self.downsample(x))


#: What ``AttentionPool2d`` returns as its dense embedding (``dense=``).
DENSE_EMBEDDINGS = ('attention', 'value')


class AttentionPool2d(nn.Module):
    """CLIP's attention pooling, returning the pooled token *and* every spatial token.

    Tokens are ``[mean; x_1 .. x_HW]`` plus a positional embedding whose spatial part is resized
    bilinearly to the feature map at run time. The pooled (global) token is CLIP's: the mean
    token's attention over all tokens. The dense tokens are one of ``DENSE_EMBEDDINGS``:

    - ``'attention'`` (DenseCLIP's): every token is a query too (OpenAI's CLIP keeps only the
      first), so token ``i`` is ``c_proj`` of its own attention over all tokens.
    - ``'value'`` (MaskCLIP's, Zhou et al., ECCV 2022): the value path alone,
      ``c_proj(v_proj(x_i + pos_i))`` per position, with no mixing between positions; it keeps
      each embedding local and classifies far better zero-shot.

    Both use the same parameters and give the same global embedding.

    Args:
        spacial_dim: Side of the positional embedding's grid (OpenAI's spelling).
        embed_dim: Width of the input tokens.
        num_heads: Attention heads.
        output_dim: Width of the embeddings (``c_proj``'s output).
        dense: One of ``DENSE_EMBEDDINGS``.
    """

    def __init__(self, spacial_dim: int, embed_dim: int, num_heads: int, output_dim: int,
                 dense: str = 'attention'):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f'attention pool width {embed_dim} is not divisible by '
                             f'num_heads {num_heads}')
        if dense not in DENSE_EMBEDDINGS:
            raise ValueError(f'attention pool: dense must be one of {DENSE_EMBEDDINGS}, '
                             f'got {dense!r}')
        self.spacial_dim = spacial_dim
        self.num_heads = num_heads
        self.dense = dense
        self.positional_embedding = nn.Parameter(
            torch.randn(spacial_dim ** 2 + 1, embed_dim) / embed_dim ** 0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        # chosen once here, so forward does not branch on ``dense``
        self.embed_tokens = dict(attention=self.dense_by_attention,
                                 value=self.dense_by_value)[dense]

    def extra_repr(self) -> str:
        return f'dense={self.dense!r}'

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # [B, L, C] -> [B, h, L, C/h]
        return t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def dense_by_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """DenseCLIP's: every token queries; ``x`` ``[B, 1+HW, C]`` -> ``([B, D], [B, HW, D])``."""
        out = F.scaled_dot_product_attention(
            self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x)))
        out = self.c_proj(out.transpose(1, 2).flatten(2))  # [B, 1+HW, D]
        return out[:, 0], out[:, 1:]

    def dense_by_value(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MaskCLIP's: only the mean token queries (CLIP's global embedding); the spatial
        tokens take the value path, ``c_proj(v_proj(x))``. ``[B, 1+HW, C]`` -> ``([B, D],
        [B, HW, D])``."""
        values = self.v_proj(x)  # [B, 1+HW, C]
        pooled = F.scaled_dot_product_attention(
            self._heads(self.q_proj(x[:, :1])), self._heads(self.k_proj(x)), self._heads(values))
        pooled = self.c_proj(pooled.transpose(1, 2).flatten(2))  # [B, 1, D]
        return pooled[:, 0], self.c_proj(values[:, 1:])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pools ``x`` ``[B, C, H, W]`` into ``(global [B, D], dense [B, D, H, W])``."""
        batch, channels, height, width = x.shape
        x = x.flatten(2).transpose(1, 2)  # NCHW -> N(HW)C
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)  # [B, 1+HW, C]
        x = x + resize_grid_embedding(self.positional_embedding, 1, (height, width)).to(x.dtype)
        pooled, dense = self.embed_tokens(x)  # [B, D], [B, HW, D]
        return pooled, dense.transpose(1, 2).reshape(batch, -1, height, width)


class ResNetTrunk(nn.Module):
    """CLIP's ResNet without its head: three-conv stem and four anti-aliased stages.

    ``with_cp`` checkpoints every bottleneck's activations in training
    (:func:`~denseclip.clip.layers.forward_block`), as mmseg's ResNet does.
    """

    def __init__(self, layers: tuple[int, int, int, int], width: int = 64,
                 with_cp: bool = False):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f'layers must give the blocks of 4 stages, got {layers}')
        self.with_cp = with_cp
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self.relu = nn.ReLU(inplace=True)

        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.out_channels = tuple(width * 4 * 2 ** i for i in range(4))  # C2..C5

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.relu(self.bn3(self.conv3(x)))
        return self.avgpool(x)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Returns C2..C5 (strides 4, 8, 16, 32)."""
        x = self.stem(x.to(self.conv1.weight.dtype))
        features = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                x = forward_block(block, x, self.with_cp)
            features.append(x)
        return features


class ModifiedResNet(ResNetTrunk):
    """CLIP's image tower: the ResNet trunk followed by attention pooling (``attnpool``).

    ``dense`` picks the attention pool's dense embedding (:class:`AttentionPool2d`); CLIP's
    image embedding does not depend on it.
    """

    def __init__(self, layers: tuple[int, int, int, int], output_dim: int, heads: int,
                 input_resolution: int = 224, width: int = 64, with_cp: bool = False,
                 dense: str = 'attention'):
        super().__init__(layers, width, with_cp)
        check_resolution(input_resolution, 32, '32 (the output stride)')
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.attnpool = AttentionPool2d(input_resolution // 32, width * 32, heads, output_dim,
                                        dense)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """CLIP's image embedding ``[B, output_dim]``."""
        return self.attnpool(self.forward_stages(x)[-1])[0]
