"""The DenseCLIP segmentor."""
from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from mmseg.models.segmentors import EncoderDecoder
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import add_prefix
from torch import nn

from denseclip.clip import check_class_names
from denseclip.clip.tokenizer import tokenize

from . import derive
from .slide import BatchedSlideMixin

PROMPTING_MODES = ('none', 'pre', 'post', 'pre+post')


@MODELS.register_module()
class DenseCLIP(BatchedSlideMixin, EncoderDecoder):
    """Pixel-text matching on top of mmseg's ``EncoderDecoder``.

    What differs from ``EncoderDecoder`` is only feature extraction, the text branch and the
    auxiliary pixel-text loss; slide/whole inference, TTA and the data preprocessor are mmseg's::

        loss    -> forward_features -> backbone -> (C2..C5, (global, dense))
                                     -> class_embeddings -> text_encoder(names, contexts)
                                     -> context_decoder(text, [global; dense]) * gamma + text
                                     -> score map -> concat at score_concat_index -> neck
                -> decode_head.loss  ('decode.*')
                -> identity_head.loss(score_map / tau)  ('identity.*')
                -> auxiliary_head.loss  ('aux.*')
        predict -> inference (mmseg: whole / slide) -> encode_decode -> extract_feat
                -> forward_features (as above) -> decode_head.predict

    ``test_cfg.slide_batch_size = N`` decodes ``N`` sliding-window crops per forward pass
    (:class:`~denseclip.models.slide.BatchedSlideMixin`); unset, mmseg's crop-by-crop loop runs.

    At inference without pre-model prompting the text encoder's output does not depend on the
    image; it is computed once and reused until a weight it depends on changes.

    Widths are derived, so a config states each once: the embedding width ``D`` is the built
    backbone's ``embed_dim`` (its ``output_dim``) and fills ``text_encoder.embed_dim``,
    ``context_decoder.visual_dim`` and ``pre_prompter.visual_dim``; the ``M`` learnable contexts
    are ``text_encoder.context_length - context_length`` (``pre_prompter.num_contexts``), of
    the text encoder's token width (``pre_prompter.text_width``). A value a config does state
    must agree (``ValueError`` at build time, naming both keys).

    Args:
        backbone: A backbone returning 4 maps plus ``(global [B, D], dense [B, D, h, w])`` and
            exposing ``D`` as ``embed_dim`` (``CLIPResNetWithAttention``,
            ``CLIPVisionTransformer`` with ``get_embeddings``, ``BackboneWithAttentionPool``).
        text_encoder: ``CLIPTextContextEncoder`` config.
        decode_head: Decode head config; ``num_classes`` defaults to the number of class names.
        class_names: Class names in label order. ``None`` is filled in from the dataset's
            metainfo by the tools (``denseclip.engine.config.fill_class_names``).
        context_length: Tokens of each class name, SOS and EOS included (5); the rest of the
            text encoder's ``context_length`` is learnable context.
        prompting: ``'post'`` (the paper's), ``'pre'``, ``'pre+post'`` or ``'none'``
            (language-guided only).
        context_decoder: ``ContextDecoder`` config, used for post-model prompting.
        pre_prompter: ``PreModelPrompter`` config, used for pre-model prompting.
        neck: Neck config. Its ``in_channels`` are the backbone's; the ``K`` score-map
            channels are added at ``score_concat_index`` here (to the decode head's
            ``in_channels`` when there is no neck).
        identity_head: Head of the auxiliary pixel-text loss (``IdentityHead``).
        auxiliary_head: mmseg auxiliary head(s) on the neck outputs; ``num_classes`` derived.
        tau: Temperature of the pixel-text loss.
        score_concat_index: Backbone level that the score map is concatenated to.
        pretrained: CLIP checkpoint for both towers (``pretrained/RN50.pt``); the backbone
            must be a CLIP image tower (its class sets ``clip_image_tower``).
        text_pretrained: CLIP checkpoint for the text tower only (defaults to ``pretrained``;
            needed for non-CLIP backbones).
        cache_text: Reuse the image-independent text embeddings at inference.
    """

    def __init__(self, backbone: dict, text_encoder: dict, decode_head: dict,
                 class_names: Optional[Sequence[str]] = None, context_length: int = 5,
                 prompting: str = 'post', context_decoder: Optional[dict] = None,
                 pre_prompter: Optional[dict] = None, neck: Optional[dict] = None,
                 identity_head: Optional[dict] = None, auxiliary_head=None, tau: float = 0.07,
                 score_concat_index: int = 3, pretrained: Optional[str] = None,
                 text_pretrained: Optional[str] = None, cache_text: bool = True,
                 train_cfg=None, test_cfg=None, data_preprocessor=None, init_cfg=None):
        class_names = derive.class_names_list(class_names)
        num_classes = len(class_names)
        if prompting not in PROMPTING_MODES:
            raise ValueError(f'model.prompting must be one of {PROMPTING_MODES}, '
                             f'got {prompting!r}')
        for key, part in (('backbone', backbone), ('text_encoder', text_encoder),
                          ('neck', neck), ('decode_head', decode_head)):
            derive.check_registered(part, key)
        if pretrained:
            derive.check_clip_image_tower(backbone, pretrained)
            backbone = dict(backbone, pretrained=pretrained)
        decode_head = derive.with_num_classes(decode_head, num_classes, 'decode_head')
        # the score map widens one backbone level: that of the neck, or of the head without one
        if neck is None:
            decode_head = derive.with_score_channels(decode_head, num_classes,
                                                     score_concat_index, 'decode_head')
        else:
            neck = derive.with_score_channels(neck, num_classes, score_concat_index, 'neck')
        super().__init__(
            backbone=backbone, decode_head=decode_head, neck=neck,
            auxiliary_head=derive.auxiliary_with_num_classes(auxiliary_head, num_classes),
            train_cfg=train_cfg, test_cfg=test_cfg,
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.class_names = tuple(class_names)
        self.score_concat_index = score_concat_index
        self.tau = tau
        self.cache_text = cache_text
        self.prompting = prompting
        self.text_encoder = self._build_text_encoder(text_encoder, text_pretrained or pretrained)
        self._build_text_branch(context_length, context_decoder, pre_prompter)
        self.identity_head = None
        if identity_head is not None:
            self.identity_head = MODELS.build(
                derive.with_num_classes(identity_head, num_classes, 'identity_head'))
        self._text_cache: Optional[tuple[tuple, torch.Tensor]] = None

    # ----------------------------------------------------------------- construction
    def _tokenize_names(self, context_length: int) -> torch.Tensor:
        derive.check_names_fit(self.class_names, context_length)
        return tokenize(self.class_names, context_length)

    def _build_text_encoder(self, cfg: dict, pretrained: Optional[str]) -> nn.Module:
        """The text encoder, projecting into the backbone's embedding space."""
        embed_dim = derive.embed_dim_of(self.backbone)
        cfg = derive.with_derived(cfg, 'text_encoder', embed_dim=(
            embed_dim, f'model.backbone.output_dim={embed_dim}'))
        cfg['pretrained'] = pretrained
        return MODELS.build(cfg)

    def _build_text_branch(self, context_length: int, context_decoder: Optional[dict],
                           pre_prompter: Optional[dict]) -> None:
        """The class-name tokens, the contexts or the pre-model prompter, and the decoder."""
        encoder = self.text_encoder
        num_contexts = derive.num_contexts_of(encoder, context_length)
        context_decoder, pre_prompter = derive.with_text_widths(
            encoder, context_length, context_decoder, pre_prompter)
        self.register_buffer('texts', self._tokenize_names(context_length),
                             persistent=False)  # [K, N]
        self.context_decoder = self.pre_prompter = None
        if 'pre' in self.prompting:
            if pre_prompter is None:
                raise ValueError(f'model.prompting={self.prompting!r} needs model.pre_prompter')
            self.pre_prompter = MODELS.build(pre_prompter)
        else:
            self.contexts = nn.Parameter(torch.empty(1, num_contexts, encoder.width))
            nn.init.trunc_normal_(self.contexts)
        if 'post' in self.prompting:
            if context_decoder is None:
                raise ValueError(f'model.prompting={self.prompting!r} needs '
                                 'model.context_decoder')
            self.context_decoder = MODELS.build(context_decoder)
            self.gamma = nn.Parameter(torch.full((encoder.embed_dim,), 1e-4))

    # ----------------------------------------------------------------- text branch
    def class_embeddings(self, visual_context: torch.Tensor,
                         texts: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Text embeddings before post-model prompting, ``[B or 1, K, D]``.

        Args:
            visual_context: ``[B, 1 + h*w, D]``, used by pre-model prompting only.
            texts: Name token ids ``[K', N]`` to embed instead of the model's classes
                (open-vocabulary queries; never cached).
        """
        if self.pre_prompter is not None:
            contexts = self.pre_prompter(visual_context)
            return self.text_encoder(self.texts if texts is None else texts, contexts)
        if texts is not None or self.training or not self.cache_text:
            return self.text_encoder(self.texts if texts is None else texts, self.contexts)
        # image-independent: reuse until a weight it depends on changes (in-place updates by
        # optimisers and load_state_dict bump version counters; swapping `.data`, as EMA hooks
        # do, changes the storage)
        weights = (self.contexts, *self.text_encoder.parameters())
        key = (self.texts.device, self.contexts.dtype,
               *((weight._version, weight.data_ptr()) for weight in weights))
        if self._text_cache is None or self._text_cache[0] != key:
            with torch.no_grad():
                self._text_cache = (key, self.text_encoder(self.texts, self.contexts))
        return self._text_cache[1]

    def text_and_score_map(self, global_embedding: torch.Tensor, dense: torch.Tensor,
                           texts: Optional[torch.Tensor] = None,
                           class_embeddings: Optional[torch.Tensor] = None):
        """Prompted text embeddings ``[B, K, D]`` and the score map ``[B, K, h, w]``.

        Args:
            global_embedding: ``[B, D]`` from the backbone.
            dense: ``[B, D, h, w]`` from the backbone.
            texts: Optional name token ids replacing the model's classes.
            class_embeddings: ``[1, K, D]`` to use instead of :meth:`class_embeddings` (an
                exported graph holds them as constants; see ``denseclip.deploy``).
        """
        # [B, D] and [B, D, h, w] -> [B, 1 + h*w, D]
        visual_context = torch.cat([global_embedding.unsqueeze(1),
                                    dense.flatten(2).transpose(1, 2)], dim=1)
        if class_embeddings is None:
            class_embeddings = self.class_embeddings(visual_context, texts)
        text = class_embeddings.expand(dense.shape[0], -1, -1)
        if self.context_decoder is not None:
            text = text + self.gamma * self.context_decoder(text, visual_context)
        score_map = torch.einsum('bchw,bkc->bkhw', F.normalize(dense, dim=1),
                                 F.normalize(text, dim=2))
        return text, score_map

    def forward_features(self, inputs: torch.Tensor,
                         class_embeddings: Optional[torch.Tensor] = None):
        """Backbone, text branch and score map.

        Args:
            inputs: Normalised images ``[B, 3, H, W]``.
            class_embeddings: Optional ``[1, K, D]`` replacing the text encoder's output.

        Returns:
            ``(features for the neck, text embeddings [B, K, D], score map [B, K, h, w])``.
        """
        *features, (global_embedding, dense) = self.backbone(inputs)
        text, score_map = self.text_and_score_map(global_embedding, dense,
                                                  class_embeddings=class_embeddings)
        features[self.score_concat_index] = torch.cat(
            [features[self.score_concat_index], score_map], dim=1)
        return features, text, score_map

    # ----------------------------------------------------------------- mmseg hooks
    def _through_neck(self, features: list) -> list:
        return list(self.neck(features)) if self.with_neck else features

    def extract_feat(self, inputs: torch.Tensor) -> list:
        return self._through_neck(self.forward_features(inputs)[0])

    def loss(self, inputs: torch.Tensor, data_samples) -> dict:
        features, _, score_map = self.forward_features(inputs)
        x = self._through_neck(features)
        losses = dict(self._decode_head_forward_train(x, data_samples))
        if self.identity_head is not None:
            losses.update(add_prefix(
                self.identity_head.loss(score_map / self.tau, data_samples, self.train_cfg),
                'identity'))
        if self.with_auxiliary_head:
            losses.update(self._auxiliary_head_forward_train(x, data_samples))
        return losses

    def score_maps(self, inputs: torch.Tensor, class_names: Optional[Sequence[str]] = None,
                   size: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """Pixel-text cosine similarities ``[B, K, h, w]`` (resized to ``size`` if given).

        Args:
            inputs: Normalised images ``[B, 3, H, W]``.
            class_names: Names to match instead of the trained classes (open vocabulary: the
                text branch runs for them; the decoder is not involved).
            size: Output ``(H, W)``; bilinear.
        """
        *_, (global_embedding, dense) = self.backbone(inputs)
        texts = None
        if class_names is not None:
            class_names = check_class_names(class_names, 'class_names')
            texts = tokenize(class_names, self.texts.shape[1]).to(self.texts.device)
        score_map = self.text_and_score_map(global_embedding, dense, texts)[1]
        return score_map if size is None else resize(score_map, size, mode='bilinear',
                                                      align_corners=False)
