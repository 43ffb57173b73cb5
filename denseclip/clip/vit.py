"""CLIP's Vision Transformer image tower."""
import torch
import torch.nn.functional as F
from torch import nn

from .layers import ResidualAttentionBlock, Transformer, check_resolution, resize_grid_embedding


def value_path(block: ResidualAttentionBlock, x: torch.Tensor) -> torch.Tensor:
    """``block`` with its attention reduced to the value path (MaskCLIP, Zhou et al. 2022).

    Every token's own value goes through ``out_proj`` (no softmax, no mixing between tokens);
    both residuals and the MLP are the block's. ``x``: ``[L, B, C]`` -> ``[L, B, C]``.
    """
    width = x.shape[-1]
    attn = block.attn  # in_proj rows: query, key, value
    values = F.linear(block.ln_1(x), attn.in_proj_weight[2 * width:],
                      attn.in_proj_bias[2 * width:])
    x = x + block.drop_path(attn.out_proj(values))
    return x + block.drop_path(block.mlp(block.ln_2(x)))


class VisionTransformer(nn.Module):
    """CLIP's ViT: bias-free patch conv, class token, ``ln_pre``, transformer, ``ln_post``,
    ``proj``.

    The spatial positional embedding is resized bilinearly to the patch grid at run time, so any
    input whose sides are multiples of the patch size is accepted. ``with_cp`` checkpoints the
    transformer blocks' activations in training.
    """

    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int,
                 heads: int, output_dim: int, drop_path_rate: float = 0.0,
                 with_cp: bool = False):
        super().__init__()
        check_resolution(input_resolution, patch_size, f'patch_size {patch_size}')
        self.input_resolution = input_resolution
        self.patch_size = patch_size
        self.output_dim = output_dim
        self.conv1 = nn.Conv2d(3, width, patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        grid = input_resolution // patch_size
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, drop_path_rate=drop_path_rate,
                                       with_cp=with_cp)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def position_embedding(self, height: int, width: int) -> torch.Tensor:
        """Positional embedding ``[1 + H*W, C]`` for an ``H x W`` patch grid."""
        return resize_grid_embedding(self.positional_embedding, 1, (height, width))

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patchifies ``x`` into ``ln_pre``-normalised tokens ``[1 + H*W, B, C]``."""
        x = self.conv1(x.to(self.conv1.weight.dtype))  # [B, C, H, W]
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)  # NCHW -> N(HW)C
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.position_embedding(*grid).to(x.dtype)
        return self.ln_pre(x).transpose(0, 1), grid  # [B, L, C] -> [L, B, C]

    def project(self, tokens: torch.Tensor) -> torch.Tensor:
        """``ln_post`` and ``proj`` on every token: ``[..., C] -> [..., output_dim]``."""
        return self.ln_post(tokens) @ self.proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """CLIP's image embedding ``[B, output_dim]`` (the projected class token)."""
        tokens, _ = self.embed(x)
        return self.project(self.transformer(tokens)[0])
