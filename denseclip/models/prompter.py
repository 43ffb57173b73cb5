"""Pre-model context-aware prompting (the ablation of the paper's Table 2)."""
import torch
from mmseg.registry import MODELS
from torch import nn

from .context_decoder import ContextDecoder


@MODELS.register_module()
class PreModelPrompter(nn.Module):
    """Turns the visual context of each image into the learnable context of the text encoder.

    ``num_contexts`` learned queries attend to the visual context through a
    :class:`ContextDecoder` whose output width is the text encoder's; the result replaces
    CoOp's shared context vectors ``[v1..vM]`` with per-image ones. Unlike post-model prompting
    (DenseCLIP's default) the text encoder then has to run once per image.

    DenseCLIP fills in ``num_contexts``, ``visual_dim`` and ``text_width`` from its text encoder
    and backbone.

    Args:
        num_contexts: Number ``M`` of context vectors (and of queries).
        visual_dim: Channels ``C`` of the visual context.
        text_width: Width of the text encoder's token embeddings.
        transformer_width: Width of the decoder.
        transformer_heads: Number of attention heads of the decoder.
        transformer_layers: Number of decoder layers.
        dropout: Dropout inside the decoder layers.
    """

    def __init__(self, num_contexts: int = 8, visual_dim: int = 1024, text_width: int = 512,
                 transformer_width: int = 256, transformer_heads: int = 4,
                 transformer_layers: int = 3, dropout: float = 0.1):
        super().__init__()
        if num_contexts <= 0:
            raise ValueError(f'PreModelPrompter: num_contexts must be positive, '
                             f'got {num_contexts}')
        self.queries = nn.Parameter(torch.empty(num_contexts, visual_dim))
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.decoder = ContextDecoder(
            transformer_width=transformer_width,
            transformer_heads=transformer_heads,
            transformer_layers=transformer_layers,
            visual_dim=visual_dim,
            dropout=dropout,
            out_dim=text_width)

    def forward(self, visual: torch.Tensor) -> torch.Tensor:
        """Computes per-image context vectors.

        Args:
            visual: Visual context ``[B, N, visual_dim]``, e.g. ``[global; dense tokens]``.

        Returns:
            Context vectors ``[B, num_contexts, text_width]`` for the text encoder.
        """
        queries = self.queries.expand(visual.shape[0], -1, -1)  # [M, C] -> [B, M, C]
        return self.decoder(queries, visual)
