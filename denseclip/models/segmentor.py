"""The DenseCLIP segmentor."""
import copy
import difflib
from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from mmseg.models.segmentors import EncoderDecoder
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import add_prefix
from torch import nn

from denseclip.clip.tokenizer import tokenize

from .slide import BatchedSlideMixin

#: Backbones that take ``pretrained`` (a CLIP checkpoint) from ``model.pretrained``.
CLIP_BACKBONES = ('CLIPResNet', 'CLIPResNetWithAttention', 'CLIPVisionTransformer')
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

    Args:
        backbone: A backbone returning 4 maps plus ``(global [B, D], dense [B, D, h, w])``.
        text_encoder: ``CLIPTextContextEncoder`` config.
        decode_head: Decode head config; ``num_classes`` defaults to the number of class names.
        class_names: Class names in label order. ``None`` is filled in from the dataset's
            metainfo by the tools (``denseclip.utils.fill_class_names``).
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
        text_head: Pass the text embeddings to the decode head as its first input.
        pretrained: CLIP checkpoint for both towers (``pretrained/RN50.pt``).
        text_pretrained: CLIP checkpoint for the text tower only (defaults to ``pretrained``;
            needed for non-CLIP backbones).
        cache_text: Reuse the image-independent text embeddings at inference.
    """

    def __init__(self, backbone: dict, text_encoder: dict, decode_head: dict,
                 class_names: Optional[Sequence[str]] = None, context_length: int = 5,
                 prompting: str = 'post', context_decoder: Optional[dict] = None,
                 pre_prompter: Optional[dict] = None, neck: Optional[dict] = None,
                 identity_head: Optional[dict] = None, auxiliary_head=None, tau: float = 0.07,
                 score_concat_index: int = 3, text_head: bool = False,
                 pretrained: Optional[str] = None, text_pretrained: Optional[str] = None,
                 cache_text: bool = True, train_cfg=None, test_cfg=None,
                 data_preprocessor=None, init_cfg=None):
        class_names = self._check_class_names(class_names)
        num_classes = len(class_names)
        if prompting not in PROMPTING_MODES:
            raise ValueError(f'model.prompting must be one of {PROMPTING_MODES}, '
                             f'got {prompting!r}')
        backbone = copy.deepcopy(backbone)
        text_encoder = copy.deepcopy(text_encoder)
        for key, part in (('backbone', backbone), ('text_encoder', text_encoder),
                          ('neck', neck), ('decode_head', decode_head)):
            self._check_registered(part, key)
        if pretrained:
            if backbone.get('type') not in CLIP_BACKBONES:
                raise ValueError(
                    f'model.pretrained={pretrained!r} points a CLIP checkpoint at both towers, '
                    f'but backbone {backbone.get("type")!r} is not a CLIP backbone; use '
                    'model.text_pretrained and the backbone\'s init_cfg instead')
            backbone['pretrained'] = pretrained
        text_encoder['pretrained'] = text_pretrained or pretrained
        decode_head = self._with_num_classes(decode_head, num_classes, 'decode_head')
        # the score map widens one backbone level: that of the neck, or of the head without one
        if neck is None:
            decode_head = self._with_score_channels(decode_head, num_classes,
                                                    score_concat_index, 'decode_head')
        else:
            neck = self._with_score_channels(neck, num_classes, score_concat_index, 'neck')
        super().__init__(
            backbone=backbone, decode_head=decode_head, neck=neck,
            auxiliary_head=self._auxiliary_with_num_classes(auxiliary_head, num_classes),
            train_cfg=train_cfg, test_cfg=test_cfg,
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.class_names = tuple(class_names)
        self.score_concat_index = score_concat_index
        self.tau = tau
        self.text_head = text_head
        self.cache_text = cache_text
        self.prompting = prompting
        self.text_encoder = MODELS.build(text_encoder)
        self._build_text_branch(context_length, context_decoder, pre_prompter)
        self.identity_head = None
        if identity_head is not None:
            self.identity_head = MODELS.build(
                self._with_num_classes(identity_head, num_classes, 'identity_head'))
        self._text_cache: Optional[tuple[tuple, torch.Tensor]] = None

    # ----------------------------------------------------------------- construction
    @staticmethod
    def _check_registered(cfg: Optional[dict], key: str) -> None:
        """Raises if ``cfg``'s type is not registered, naming the closest registered types."""
        kind = (cfg or {}).get('type')
        if not isinstance(kind, str) or MODELS.get(kind) is not None:
            return
        close = difflib.get_close_matches(kind, [*MODELS.module_dict, *MODELS.parent.module_dict])
        guess = (f'did you mean {" or ".join(map(repr, close))}?' if close else
                 'no registered type has a similar name.')
        raise KeyError(f'model.{key}.type={kind!r}: {kind} is not in the mmseg::model registry '
                       f'(unknown type); {guess} Fix the spelling, or import the module that '
                       'registers it (custom_imports in the config)')

    @staticmethod
    def _check_class_names(class_names) -> list[str]:
        if class_names is None:
            raise ValueError(
                'model.class_names is not set: give it in the config, or build the model '
                'through tools/train.py / tools/test.py (or denseclip.utils.fill_class_names), '
                'which take it from the dataset metainfo')
        if isinstance(class_names, str):
            raise TypeError(f'model.class_names must be a list of names, got the string '
                            f'{class_names!r}')
        class_names = list(class_names)
        if not class_names:
            raise ValueError('model.class_names is empty: DenseCLIP needs at least one class')
        return class_names

    @staticmethod
    def _with_num_classes(head: dict, num_classes: int, key: str) -> dict:
        head = copy.deepcopy(head)
        given = head.get('num_classes')
        head['num_classes'] = num_classes
        if given is not None and given != num_classes:
            raise ValueError(f'model.{key}.num_classes={given} disagrees with the '
                             f'{num_classes} class names; drop it (it is derived) or fix the '
                             'class names')
        return head

    @classmethod
    def _auxiliary_with_num_classes(cls, heads, num_classes: int):
        if heads is None:
            return None
        if isinstance(heads, (list, tuple)):
            return [cls._with_num_classes(head, num_classes, f'auxiliary_head[{index}]')
                    for index, head in enumerate(heads)]
        return cls._with_num_classes(heads, num_classes, 'auxiliary_head')

    @staticmethod
    def _with_score_channels(module: dict, num_classes: int, index: int, key: str) -> dict:
        module = copy.deepcopy(module)
        channels = list(module['in_channels'])
        if not 0 <= index < len(channels):
            raise ValueError(f'model.score_concat_index={index} is out of range for the '
                             f'{len(channels)} levels of model.{key}.in_channels')
        channels[index] += num_classes  # the score map is concatenated to this level
        module['in_channels'] = channels
        return module

    def _tokenize_names(self, context_length: int) -> torch.Tensor:
        try:
            return tokenize(self.class_names, context_length)
        except ValueError:  # name the names and the config keys (the tokenizer knows neither)
            # EOS has the largest id: its position + 1 is the tokenized length
            lengths = {name: int(tokenize(name, 77, truncate=True).argmax()) + 1
                       for name in self.class_names}
            too_long = {name: length for name, length in lengths.items()
                        if length > context_length}
            raise ValueError(
                f'model.class_names: {too_long} (name: tokens with SOS and EOS) do not fit '
                f'model.context_length={context_length}; shorten those names, or raise '
                'model.context_length and model.text_encoder.context_length by the same '
                'amount') from None

    def _build_text_branch(self, context_length: int, context_decoder: Optional[dict],
                           pre_prompter: Optional[dict]) -> None:
        encoder = self.text_encoder
        num_contexts = encoder.context_length - context_length
        if num_contexts < 0:
            raise ValueError(f'model.context_length={context_length} exceeds the text '
                             f'encoder context_length {encoder.context_length}')
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
                           texts: Optional[torch.Tensor] = None):
        """Prompted text embeddings ``[B, K, D]`` and the score map ``[B, K, h, w]``.

        Args:
            global_embedding: ``[B, D]`` from the backbone.
            dense: ``[B, D, h, w]`` from the backbone.
            texts: Optional name token ids replacing the model's classes.
        """
        # [B, D] and [B, D, h, w] -> [B, 1 + h*w, D]
        visual_context = torch.cat([global_embedding.unsqueeze(1),
                                    dense.flatten(2).transpose(1, 2)], dim=1)
        text = self.class_embeddings(visual_context, texts).expand(dense.shape[0], -1, -1)
        if self.context_decoder is not None:
            text = text + self.gamma * self.context_decoder(text, visual_context)
        score_map = torch.einsum('bchw,bkc->bkhw', F.normalize(dense, dim=1),
                                 F.normalize(text, dim=2))
        return text, score_map

    def forward_features(self, inputs: torch.Tensor):
        """Backbone, text branch and score map.

        Returns:
            ``(features for the neck, text embeddings [B, K, D], score map [B, K, h, w])``.
        """
        *features, (global_embedding, dense) = self.backbone(inputs)
        text, score_map = self.text_and_score_map(global_embedding, dense)
        features[self.score_concat_index] = torch.cat(
            [features[self.score_concat_index], score_map], dim=1)
        return features, text, score_map

    # ----------------------------------------------------------------- mmseg hooks
    def _decoder_inputs(self, features: list, text: torch.Tensor) -> list:
        features = list(self.neck(features)) if self.with_neck else features
        return [text, *features] if self.text_head else features

    def extract_feat(self, inputs: torch.Tensor) -> list:
        features, text, _ = self.forward_features(inputs)
        return self._decoder_inputs(features, text)

    def loss(self, inputs: torch.Tensor, data_samples) -> dict:
        features, text, score_map = self.forward_features(inputs)
        x = self._decoder_inputs(features, text)
        losses = dict(self._decode_head_forward_train(x, data_samples))
        if self.identity_head is not None:
            losses.update(add_prefix(
                self.identity_head.loss(score_map / self.tau, data_samples, self.train_cfg),
                'identity'))
        if self.with_auxiliary_head:
            head_inputs = x[1:] if self.text_head else x
            losses.update(self._auxiliary_head_forward_train(head_inputs, data_samples))
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
            texts = tokenize(list(class_names), self.texts.shape[1]).to(self.texts.device)
        score_map = self.text_and_score_map(global_embedding, dense, texts)[1]
        return score_map if size is None else resize(score_map, size, mode='bilinear',
                                                      align_corners=False)
