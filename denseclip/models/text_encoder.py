"""CLIP's text encoder with learnable context vectors, for DenseCLIP."""
from typing import Optional

import torch
from mmseg.registry import MODELS
from torch import nn

from denseclip.clip.checkpoint import load_tower
from denseclip.clip.text import TextTransformer


def prompt_tokens(token_embedding: nn.Embedding, text: torch.Tensor, context: torch.Tensor,
                  context_length: int) -> torch.Tensor:
    """Token embeddings ``[SOS][ctx_1 .. ctx_M][name][EOS]`` of every class and context set.

    Args:
        token_embedding: The text tower's token embedding.
        text: Class-name token ids ``[K, N]`` with ``N + M == context_length``.
        context: Context vectors ``[B, M, width]`` (``B`` may be 1).
        context_length: The text tower's sequence length.

    Returns:
        ``[B, K, context_length, width]``.
    """
    num_classes, name_length = text.shape
    batch, num_contexts, _ = context.shape
    if name_length + num_contexts != context_length:
        raise ValueError(f'{name_length} name tokens + {num_contexts} contexts != '
                         f'context_length {context_length}')
    names = token_embedding(text)  # [K, N, C]
    names = names.unsqueeze(0).expand(batch, -1, -1, -1)  # [B, K, N, C]
    context = context.unsqueeze(1).expand(-1, num_classes, -1, -1)  # [B, K, M, C]
    return torch.cat([names[:, :, :1], context.to(names.dtype), names[:, :, 1:]], dim=2)


@MODELS.register_module()
class CLIPTextContextEncoder(TextTransformer):
    """CLIP's text encoder with learnable context vectors inserted after the start token.

    Each class becomes ``[SOS][ctx_1 .. ctx_M][name tokens][EOS]``: the class-name token ids have
    length ``context_length - M`` and the end-of-text position shifts by ``M``. The contexts are
    owned by the caller (the segmentor or a pre-model prompter); they may be shared
    ``[1, M, width]`` or per image ``[B, M, width]``. Fixed prompts ("a photo of a [CLS].")
    need no contexts: :meth:`encode_text` embeds token ids as CLIP does.

    Args:
        context_length: Total sequence length (13 = 8 contexts + 5 name tokens in DenseCLIP);
            CLIP's 77 positions are truncated to it when loading.
        vocab_size: Token vocabulary.
        transformer_width: Token width (the width of the context vectors).
        transformer_heads: Attention heads.
        transformer_layers: Transformer blocks.
        embed_dim: Output dimension, the image tower's (1024 for RN50, 512 for RN101 and
            ViT-B); ``DenseCLIP`` fills it in from its backbone.
        pretrained: A CLIP archive or state dict whose text part ``init_weights`` loads.
        frozen: Freeze the weights (DenseCLIP trains only the contexts on the text side).
        with_cp: Checkpoint every transformer block's activations in training (frozen, the
            encoder still keeps them for the gradient that flows through it to the contexts).
    """

    def __init__(self, context_length: int = 13, vocab_size: int = 49408,
                 transformer_width: int = 512, transformer_heads: int = 8,
                 transformer_layers: int = 12, embed_dim: int = 1024,
                 pretrained: Optional[str] = None, frozen: bool = True,
                 with_cp: bool = False):
        super().__init__(context_length, vocab_size, transformer_width, transformer_heads,
                         transformer_layers, embed_dim, with_cp)
        self.pretrained = pretrained
        if frozen:
            self.freeze()

    @property
    def width(self) -> int:
        """Width of the token embeddings, and so of the context vectors."""
        return self.token_embedding.embedding_dim

    def freeze(self) -> None:
        """Stops gradients *for* the weights; gradients still flow *through* to the inputs."""
        self.requires_grad_(False)

    def init_weights(self) -> None:
        if self.pretrained:
            load_tower(self, self.pretrained, 'text')

    def forward(self, text: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Embeds every class with every context set.

        Args:
            text: Class-name token ids ``[K, N]`` with ``N + M == context_length``.
            context: Context vectors ``[B, M, width]`` (``B`` may be 1).

        Returns:
            ``[B, K, embed_dim]``.
        """
        tokens = prompt_tokens(self.token_embedding, text, context, self.context_length)
        batch, num_classes = tokens.shape[:2]
        eot_index = (text.argmax(dim=-1) + context.shape[1]).repeat(batch)  # [B*K]
        embeddings = self.encode_embeddings(tokens.flatten(0, 1), eot_index)  # [B*K, D]
        return embeddings.reshape(batch, num_classes, -1)
