"""CLIP's causal text transformer."""
import torch
from torch import nn

from .layers import Transformer


class TextTransformer(nn.Module):
    """CLIP's text tower: token + positional embedding, causal transformer, ``ln_final``, and the
    end-of-text token projected by ``text_projection``.

    Its parameters sit at the top level of the module (``token_embedding``,
    ``positional_embedding``, ``transformer``, ``ln_final``, ``text_projection``), exactly where
    OpenAI's checkpoints keep them. ``with_cp`` checkpoints the transformer blocks' activations
    in training.
    """

    def __init__(self, context_length: int = 77, vocab_size: int = 49408, width: int = 512,
                 heads: int = 8, layers: int = 12, embed_dim: int = 512, with_cp: bool = False):
        super().__init__()
        self.context_length = context_length
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.transformer = Transformer(width, layers, heads, causal=True, with_cp=with_cp)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, embed_dim))
        self.reset_text_parameters()

    def reset_text_parameters(self) -> None:
        """OpenAI's initialisation of the text tower."""
        width, layers = self.transformer.width, self.transformer.layers
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        proj_std = width ** -0.5 * (2 * layers) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width ** -0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width ** -0.5)

    def encode_embeddings(self, x: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        """Runs the transformer on token embeddings.

        Args:
            x: Token embeddings ``[N, L, width]`` with ``L <= context_length``.
            eot_index: Position of the end-of-text token of each sequence, ``[N]``.

        Returns:
            Text embeddings ``[N, embed_dim]``.
        """
        length = x.shape[1]
        if length > self.context_length:
            raise ValueError(f'{length} tokens do not fit the text context_length '
                             f'{self.context_length}')
        x = x + self.positional_embedding[:length].to(x.dtype)
        x = self.transformer(x.transpose(0, 1)).transpose(0, 1)  # NLC -> LNC -> NLC
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0], device=x.device), eot_index] @ self.text_projection

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        """Embeds token ids ``[N, L]`` (end-of-text = highest id) into ``[N, embed_dim]``."""
        return self.encode_embeddings(self.token_embedding(text), text.argmax(dim=-1))
