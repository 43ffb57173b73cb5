"""An open_clip model's text tower with learnable context vectors, for DenseCLIP."""
import os
from typing import Optional

import torch
from mmseg.registry import MODELS
from torch import nn

from denseclip.clip.checkpoint import load_into
from denseclip.clip.errors import CheckpointError
from denseclip.clip.open_clip_weights import (check_text_tower, import_open_clip, model_config,
                                              read_towers)

from .text_encoder import prompt_tokens


@MODELS.register_module()
class OpenCLIPTextContextEncoder(nn.Module):
    """open_clip's text tower (``text``) with contexts inserted after the start token.

    As :class:`~denseclip.models.text_encoder.CLIPTextContextEncoder`, for the open_clip models
    whose text tower is CLIP's causal transformer reading CLIP's BPE tokens (OpenAI, LAION,
    DataComp, ConvNeXt-CLIP, EVA02-CLIP); other text towers (SigLIP's, Hugging Face models,
    CoCa's) are refused when building. Each class becomes ``[SOS][ctx_1 .. ctx_M][name][EOS]``;
    with no contexts the output is open_clip's ``encode_text``.

    Args:
        model_name: The open_clip architecture (``open_clip.list_models()``).
        context_length: Total sequence length (contexts + name tokens); open_clip's 77
            positions are truncated to it when loading.
        embed_dim: Output dimension; ``DenseCLIP`` fills it in from its backbone, and it must be
            the architecture's.
        pretrained: An open_clip checkpoint whose text tower ``init_weights`` loads.
        frozen: Freeze the weights (DenseCLIP trains only the contexts on the text side).
        with_cp: Checkpoint every transformer block's activations in training.
    """

    def __init__(self, model_name: str = 'ViT-B-16', context_length: int = 13,
                 embed_dim: Optional[int] = None, pretrained: Optional[str] = None,
                 frozen: bool = True, with_cp: bool = False):
        super().__init__()
        open_clip = import_open_clip('model.text_encoder (OpenCLIPTextContextEncoder)')
        config = model_config(model_name, 'model.text_encoder.model_name')
        text_cfg = check_text_tower(model_name, config, 'model.text_encoder.model_name')
        if embed_dim is not None and embed_dim != config['embed_dim']:
            raise ValueError(f'model.text_encoder.embed_dim={embed_dim} (the backbone\'s) is not '
                             f'the {config["embed_dim"]} of open_clip\'s {model_name!r}; use the '
                             'same model_name for the backbone and the text encoder')
        if not 0 < context_length <= text_cfg.get('context_length', 77):
            raise ValueError(f'model.text_encoder.context_length={context_length} must be in '
                             f'1..{text_cfg.get("context_length", 77)} ({model_name!r})')
        self.text = open_clip.model._build_text_tower(
            config['embed_dim'], dict(text_cfg, context_length=context_length),
            config.get('quick_gelu', False))
        self.text.transformer.grad_checkpointing = with_cp
        self.model_name = model_name
        self.context_length = context_length
        self.embed_dim = config['embed_dim']
        self.pretrained = pretrained
        # the pooled position of each sequence: its end-of-text token or the last position
        self.pool_last = self.text.pool_type == 'last'
        if frozen:
            self.freeze()

    @property
    def width(self) -> int:
        """Width of the token embeddings, and so of the context vectors."""
        return self.text.token_embedding.embedding_dim

    def freeze(self) -> None:
        """Stops gradients *for* the weights; gradients still flow *through* to the inputs."""
        self.requires_grad_(False)

    def init_weights(self) -> None:
        if self.pretrained:
            _, text = read_towers(self.pretrained)
            if not text:
                raise CheckpointError(f'{os.fspath(self.pretrained)!r} holds no text tower')
            load_into(self.text, text, source=os.fspath(self.pretrained),
                      text_positions=('positional_embedding',))

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """``text_projection``: a matrix, a linear layer with bias, or none."""
        projection = self.text.text_projection
        if projection is None:
            return pooled
        return projection(pooled) if isinstance(projection, nn.Linear) else pooled @ projection

    def forward(self, text: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Embeds every class with every context set.

        Args:
            text: Class-name token ids ``[K, N]`` with ``N + M == context_length``.
            context: Context vectors ``[B, M, width]`` (``B`` may be 1).

        Returns:
            ``[B, K, embed_dim]``.
        """
        tower = self.text
        tokens = prompt_tokens(tower.token_embedding, text, context, self.context_length)
        batch, num_classes = tokens.shape[:2]
        num_contexts = context.shape[1]
        tokens = tokens.flatten(0, 1) + tower.positional_embedding.to(tokens.dtype)  # [B*K, L, C]
        tokens = tower.ln_final(tower.transformer(tokens, attn_mask=tower.attn_mask))
        position = (torch.full_like(text[:, 0], self.context_length - 1) if self.pool_last
                    else text.argmax(dim=-1) + num_contexts).repeat(batch)  # [B*K]
        pooled = tokens[torch.arange(tokens.shape[0], device=tokens.device), position]
        return self.project(pooled).reshape(batch, num_classes, -1)
