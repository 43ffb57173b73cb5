"""DenseCLIP's context decoder: text embeddings attend to the visual context.

Parameter names follow the released DenseCLIP (``context_decoder.memory_proj.0.weight``,
``context_decoder.decoder.0.self_attn.q_proj.weight``, ``...mlp.3.bias`` ...) so that its
checkpoints load by a prefix filter alone.
"""
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import nn


class Attention(nn.Module):
    """Multi-head attention with separate bias-free ``q_proj/k_proj/v_proj`` and a biased ``proj``.

    Unlike ``nn.MultiheadAttention`` the projections are separate modules and carry no bias (the
    released DenseCLIP layout); the attention itself runs on ``F.scaled_dot_product_attention``
    with scale ``head_dim ** -0.5`` and no attention dropout. Sequences are batch-first.

    Args:
        width: Embedding width of queries, keys and values.
        heads: Number of attention heads; must divide ``width``.
        proj_drop: Dropout applied after the output projection.
    """

    def __init__(self, width: int, heads: int, proj_drop: float = 0.0):
        super().__init__()
        if width % heads:
            raise ValueError(f'attention width {width} is not divisible by heads {heads}')
        self.heads = heads
        self.q_proj = nn.Linear(width, width, bias=False)
        self.k_proj = nn.Linear(width, width, bias=False)
        self.v_proj = nn.Linear(width, width, bias=False)
        self.proj = nn.Linear(width, width)
        self.proj_drop = nn.Dropout(proj_drop)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        # [B, L, C] -> [B, heads, L, C / heads]
        return x.reshape(batch, length, self.heads, width // self.heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attends queries ``q`` ``[B, N, C]`` to keys ``k`` and values ``v`` ``[B, M, C]``.

        Returns:
            ``[B, N, C]``.
        """
        batch, length, width = q.shape
        out = F.scaled_dot_product_attention(
            self._split_heads(self.q_proj(q)),
            self._split_heads(self.k_proj(k)),
            self._split_heads(self.v_proj(v)),
            dropout_p=0.0)  # [B, heads, N, C / heads]
        out = out.transpose(1, 2).reshape(batch, length, width)  # -> [B, N, C]
        return self.proj_drop(self.proj(out))


class ContextDecoderLayer(nn.Module):
    """A pre-norm transformer decoder layer: self-attention, cross-attention to memory, MLP.

    Differs from ``nn.TransformerDecoderLayer`` in the released DenseCLIP's details: norms come
    before each branch, only the MLP branch has a residual dropout (the attention branches have
    dropout inside, after their projection), and the MLP's keys are ``mlp.0`` / ``mlp.3``.

    Args:
        width: Embedding width.
        heads: Number of attention heads.
        dropout: Dropout of the attention projections, inside the MLP and after it.
    """

    def __init__(self, width: int, heads: int, dropout: float = 0.1):
        super().__init__()
        self.self_attn = Attention(width, heads, proj_drop=dropout)
        self.cross_attn = Attention(width, heads, proj_drop=dropout)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.norm3 = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.mlp = nn.Sequential(
            nn.Linear(width, width * 4),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(width * 4, width),
        )

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Updates the queries ``x`` ``[B, K, W]`` from ``memory`` ``[B, N, W]``.

        Returns:
            ``[B, K, W]``.
        """
        q = self.norm1(x)
        x = x + self.self_attn(q, q, q)
        x = x + self.cross_attn(self.norm2(x), memory, memory)
        return x + self.dropout(self.mlp(self.norm3(x)))


@MODELS.register_module()
class ContextDecoder(nn.Module):
    """The post-model prompting decoder of DenseCLIP: text queries, visual keys and values.

    Both inputs are projected from ``visual_dim`` to the decoder width (the memory gets an extra
    LayerNorm after its projection), pass ``transformer_layers`` decoder layers and are projected
    back to ``out_dim``. The caller scales the result (DenseCLIP's ``t + gamma * decoder(t, v)``).

    Args:
        transformer_width: Width ``W`` of the decoder.
        transformer_heads: Number of attention heads; must divide ``transformer_width``.
        transformer_layers: Number of decoder layers.
        visual_dim: Channels ``C`` of both the text embeddings and the visual context (DenseCLIP
            fills in its backbone's embedding width).
        dropout: Dropout inside the decoder layers.
        out_dim: Output channels; ``visual_dim`` when ``None``.
    """

    def __init__(self, transformer_width: int = 256, transformer_heads: int = 4,
                 transformer_layers: int = 3, visual_dim: int = 1024, dropout: float = 0.1,
                 out_dim: int | None = None):
        super().__init__()
        out_dim = visual_dim if out_dim is None else out_dim
        for name, value in (('transformer_width', transformer_width),
                            ('transformer_heads', transformer_heads),
                            ('visual_dim', visual_dim), ('out_dim', out_dim)):
            if value <= 0:
                raise ValueError(f'ContextDecoder: {name} must be positive, got {value}')
        if transformer_width % transformer_heads:
            raise ValueError(f'ContextDecoder: transformer_width {transformer_width} is not '
                             f'divisible by transformer_heads {transformer_heads}')
        if transformer_layers < 0:
            raise ValueError(f'ContextDecoder: transformer_layers must be >= 0, '
                             f'got {transformer_layers}')
        self.visual_dim = visual_dim
        self.out_dim = out_dim
        self.memory_proj = nn.Sequential(
            nn.LayerNorm(visual_dim),
            nn.Linear(visual_dim, transformer_width),
            nn.LayerNorm(transformer_width),
        )
        self.text_proj = nn.Sequential(
            nn.LayerNorm(visual_dim),
            nn.Linear(visual_dim, transformer_width),
        )
        self.decoder = nn.ModuleList([
            ContextDecoderLayer(transformer_width, transformer_heads, dropout)
            for _ in range(transformer_layers)])
        self.out_proj = nn.Sequential(
            nn.LayerNorm(transformer_width),
            nn.Linear(transformer_width, out_dim),
        )
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """Linear: trunc-normal weights (std 0.02), zero biases; LayerNorm: ones and zeros."""
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """Lets the text embeddings attend to the visual context.

        Args:
            text: Text embeddings ``[B, K, visual_dim]`` (the queries).
            visual: Visual context ``[B, N, visual_dim]``, e.g. ``[global; dense tokens]``.

        Returns:
            ``[B, K, out_dim]``.
        """
        memory = self.memory_proj(visual)  # [B, N, W]
        x = self.text_proj(text)  # [B, K, W]
        for layer in self.decoder:
            x = layer(x, memory)
        return self.out_proj(x)  # [B, K, out_dim]
