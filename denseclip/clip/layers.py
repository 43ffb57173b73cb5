"""Building blocks shared by CLIP's image and text towers.

Parameter names follow OpenAI's CLIP (``attn.in_proj_weight``, ``mlp.c_fc``, ``ln_1`` ...) so that
its state dicts load without renaming.
"""
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint


class QuickGELU(nn.Module):
    """The sigmoid approximation of GELU that CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample with probability ``p``."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f'DropPath probability must be in [0, 1), got {p}')
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        # one Bernoulli draw per sample; x is [L, B, C] in the transformers here
        mask = x.new_empty((1, x.shape[1]) + (1,) * (x.ndim - 2)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f'p={self.p}'


class MultiheadSelfAttention(nn.Module):
    """Self-attention with ``nn.MultiheadAttention``'s parameter layout, on the fused kernel.

    Same parameters (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) and the same result as
    ``nn.MultiheadAttention(x, x, x)``, but computed with ``F.scaled_dot_product_attention``.
    """

    def __init__(self, width: int, heads: int, causal: bool = False):
        super().__init__()
        if width % heads:
            raise ValueError(f'attention width {width} is not divisible by heads {heads}')
        self.heads = heads
        self.causal = causal
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length, batch, width = x.shape  # [L, B, C]
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        # [L, B, 3C] -> 3 x [B, heads, L, C / heads]
        qkv = qkv.reshape(length, batch, 3, self.heads, width // self.heads).permute(2, 1, 3, 0, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=self.causal)
        out = out.permute(2, 0, 1, 3).reshape(length, batch, width)  # [B, h, L, c] -> [L, B, C]
        return self.out_proj(out)


class ResidualAttentionBlock(nn.Module):
    """CLIP's pre-norm transformer block, with optional stochastic depth on both branches."""

    def __init__(self, width: int, heads: int, causal: bool = False, drop_path: float = 0.0,
                 act_layer: type[nn.Module] = QuickGELU):
        super().__init__()
        self.attn = MultiheadSelfAttention(width, heads, causal)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ('c_fc', nn.Linear(width, width * 4)),
            ('gelu', act_layer()),
            ('c_proj', nn.Linear(width * 4, width)),
        ]))
        self.ln_2 = nn.LayerNorm(width)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.ln_1(x)))
        return x + self.drop_path(self.mlp(self.ln_2(x)))


@contextmanager
def _keep_norm_statistics(block: nn.Module) -> Iterator[None]:
    """Restores the BatchNorm buffers of ``block`` that a recomputation updates a second time."""
    buffers = [buffer for module in block.modules() if isinstance(module, _BatchNorm)
               for buffer in module.buffers()]
    saved = [buffer.clone() for buffer in buffers]
    try:
        yield
    finally:
        for buffer, value in zip(buffers, saved):
            buffer.copy_(value)


def forward_block(block: nn.Module, x: torch.Tensor, with_cp: bool) -> torch.Tensor:
    """``block(x)``, activation-checkpointed when ``with_cp`` and training with grad enabled.

    Checkpointed, the block keeps only its input; backward runs its forward again (same random
    draws, BatchNorm running statistics updated once) to get the activations it needs. Outputs,
    gradients and buffers are those of ``block(x)``; memory falls, compute rises by a forward.
    """
    if not (with_cp and block.training and torch.is_grad_enabled()):
        return block(x)
    return checkpoint(block, x, use_reentrant=False,
                      context_fn=lambda: (nullcontext(), _keep_norm_statistics(block)))


class Transformer(nn.Module):
    """A stack of residual attention blocks on ``[L, B, C]`` sequences (``resblocks.N``).

    ``with_cp`` checkpoints every block's activations in training (:func:`forward_block`).
    """

    def __init__(self, width: int, layers: int, heads: int, causal: bool = False,
                 drop_path_rate: float = 0.0, with_cp: bool = False):
        super().__init__()
        self.width = width
        self.layers = layers
        self.with_cp = with_cp
        # drop-path rate rising linearly from 0 to drop_path_rate over the blocks
        rates = [drop_path_rate * i / max(layers - 1, 1) for i in range(layers)]
        self.resblocks = nn.Sequential(*[
            ResidualAttentionBlock(width, heads, causal, rate) for rate in rates])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = forward_block(block, x, self.with_cp)
        return x


def resize_grid_embedding(embedding: torch.Tensor, num_prefix: int,
                          size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resizes the square spatial part of a positional embedding.

    Args:
        embedding: ``[num_prefix + S * S, C]``; the first ``num_prefix`` rows (the class or
            global position) are kept as they are.
        num_prefix: Number of leading non-spatial positions.
        size: Target grid ``(H, W)``.

    Returns:
        ``[num_prefix + H * W, C]``.
    """
    prefix, grid = embedding[:num_prefix], embedding[num_prefix:]
    side = int(round(int(grid.shape[0]) ** 0.5))
    if side * side != grid.shape[0]:
        raise ValueError(f'positional embedding has {grid.shape[0]} spatial positions, '
                         'which is not a square grid')
    if (side, side) == tuple(size):
        return embedding
    channels = grid.shape[1]
    grid = grid.reshape(1, side, side, channels).permute(0, 3, 1, 2)  # [1, C, S, S]
    grid = F.interpolate(grid, size=size, mode='bilinear', align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(size[0] * size[1], channels)  # [H*W, C]
    return torch.cat([prefix, grid], dim=0)


def check_resolution(resolution: int, multiple: int, unit: str,
                     key: str = 'input_resolution') -> None:
    """Raises unless ``resolution`` is a whole number of grid cells of ``multiple`` pixels.

    Args:
        resolution: The input resolution a positional embedding is stored for.
        multiple: Pixels per grid cell (the output stride or the patch size).
        unit: How the message names ``multiple`` (``'32 (the output stride)'``).
        key: How the message names ``resolution`` (a config key, where there is one).
    """
    if resolution % multiple:
        suggestion = max(multiple, round(resolution / multiple) * multiple)
        raise ValueError(
            f'{key}={resolution} is not a multiple of {unit}: the positional embedding needs a '
            f'whole grid; use the crop size rounded to a multiple of {multiple}, e.g. '
            f'{suggestion}')
