"""Training-free (zero-shot) segmentation: every dense CLIP embedding, classified by text."""
import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Optional, Union

import torch
from mmengine.logging import MMLogger
from mmseg.models.segmentors import BaseSegmentor, EncoderDecoder
from mmseg.models.utils import resize
from mmseg.registry import MODELS

from denseclip.clip.checkpoint import load_into, text_state_dict, visual_state_dict
from denseclip.clip.errors import CheckpointError
from denseclip.clip.reading import clip_state_dict, read_clip_weights
from denseclip.clip.zero_shot import (MAX_LOGIT_SCALE, PHOTO_TEMPLATES, ZeroShotClassifier,
                                      build_classifier, check_template, read_templates)

from . import derive
from .slide import BatchedSlideMixin

#: Told to users whose CHECKPOINT holds no CLIP weights.
CHECKPOINT_HINT = (
    'A zero-shot segmentor takes every weight from CLIP: give an OpenAI CLIP archive (RN50.pt, '
    'ViT-B-16.pt, ...), a CLIP state dict, or a checkpoint of the contrastive CLIP model '
    '(tools/train.py) as the CHECKPOINT of tools/test.py and tools/demo.py')


def check_dense_clip_tower(backbone: dict) -> None:
    """The backbone's class must take CLIP's image tower (``clip_image_tower``)."""
    kind = backbone.get('type')
    backbone_class = MODELS.get(kind) if isinstance(kind, str) else kind
    if not getattr(backbone_class, 'clip_image_tower', False):
        raise ValueError(
            f'model.backbone.type={kind!r} is not a CLIP image tower: zero-shot segmentation '
            'classifies embeddings in CLIP\'s joint image-text space; use '
            'CLIPResNetWithAttention or CLIPVisionTransformer (get_embeddings=True)')


def templates_list(templates: Union[Sequence[str], str, os.PathLike, None]) -> tuple[str, ...]:
    """``model.templates``: ``None`` (CLIP's photo templates), a list, or a file of them."""
    if templates is None:
        return PHOTO_TEMPLATES
    if isinstance(templates, str) and '{}' in templates and not os.path.isfile(templates):
        raise ValueError(f'model.templates={templates!r} is one template: give a list of them '
                         '(or the path of a text file holding them, one a line)')
    if isinstance(templates, (str, os.PathLike)):
        return tuple(read_templates(templates))  # one a line; the reader names file and line
    templates = tuple(templates)
    if not templates:
        raise ValueError('model.templates is empty: give prompt templates such as '
                         '"a photo of a {}.", a file of them, or None for the default ones')
    for index, template in enumerate(templates):
        check_template(template, f'model.templates[{index}]')
    return templates


@MODELS.register_module()
class ZeroShotCLIPSegmentor(BatchedSlideMixin, EncoderDecoder):
    """CLIP's zero-shot classifier applied at every position of the dense image embedding.

    No decoder and nothing trained (MaskCLIP-style): the class names, written into prompt
    templates and ensembled, give a text classifier ``[K, D]`` (built once, rebuilt when the
    names or the text weights change); each dense embedding of the CLIP image tower is
    classified by it. What differs from ``EncoderDecoder`` is only ``extract_feat`` /
    ``encode_decode`` (there is no decode head) and ``loss`` (there is nothing to train);
    whole / slide inference, TTA, the data preprocessor and post-processing are mmseg's::

        predict -> inference (mmseg: whole / slide) -> encode_decode
                -> extract_feat -> backbone -> (..., (global, dense [B, D, h, w]))
                -> classifier.dense: logit_scale * norm(dense) . text [K, D]^T -> [B, K, h, w]
                -> bilinear resize to the input (the image, or the crop when sliding)
        loss    -> RuntimeError (nothing to train)

    The dense embeddings are the backbone's, chosen by ``backbone.dense_embedding``. The
    zero-shot configs take MaskCLIP's (Zhou et al., "Extract Free Dense Labels from CLIP", ECCV
    2022), ``'value'``: for ``CLIPResNetWithAttention`` the attention pool's value path at every
    position, ``c_proj(v_proj(x + pos))``; for ``CLIPVisionTransformer`` the last block with its
    attention reduced to the value path, then ``ln_post`` and ``proj``. Why: CLIP was trained
    only on the pooled token. Letting every position query the whole image (DenseCLIP's
    ``'attention'``, which DenseCLIP's decoder is then trained on) mixes global context into
    every position and blurs the map; the value path keeps each embedding local and still in
    the joint space (the ResNet's global embedding is exactly an attention-weighted mean of
    these value embeddings), which MaskCLIP found to segment far better without training.

    Background: every pixel gets one of the ``K`` names; no "background" class is added. ADE20K
    has none (its label 0, "other", is ignored by ``reduce_zero_label``: 0 -> 255), so the
    metric only looks at pixels of the named classes. For a dataset with a background class,
    name it (e.g. ``'background'``) like any other class.

    All weights come from the CLIP archive ``pretrained`` (``init_weights``, or
    :meth:`load_clip` once built). So the tools accept CLIP weights as the CHECKPOINT
    argument (``clip_archive_is_checkpoint``): ``tools/test.py CONFIG RN50.pt``; an OpenAI
    archive, a CLIP state dict or a checkpoint of the contrastive CLIP model of
    ``tools/train.py``, all read by :func:`denseclip.clip.reading.read_clip_weights`.

    Args:
        backbone: A CLIP image tower with dense embeddings (``CLIPResNetWithAttention``,
            ``CLIPVisionTransformer`` with ``get_embeddings=True``).
        text_encoder: CLIP's text tower (``CLIPTextContextEncoder``, ``context_length=77``);
            its ``embed_dim`` is the backbone's.
        class_names: Class names in label order; ``None`` is filled in from the dataset's
            metainfo by the tools (``denseclip.engine.config.fill_class_names``). They may be
            changed after building (the classifier is rebuilt).
        templates: Prompt templates (each with ``{}`` once), a text file of them (one a line),
            or ``None`` for ``denseclip.clip.zero_shot.PHOTO_TEMPLATES``.
        logit_scale: Multiplies the cosine similarities (CLIP's trained models use 100).
        pretrained: CLIP weights for both towers (``pretrained/RN50.pt``, or any file
            :func:`~denseclip.clip.reading.read_clip_weights` takes).
    """

    #: Every weight comes from the CLIP archive: the tools take it as the CHECKPOINT argument.
    clip_archive_is_checkpoint = True

    def __init__(self, backbone: dict, text_encoder: dict,
                 class_names: Optional[Sequence[str]] = None,
                 templates: Union[Sequence[str], str, os.PathLike, None] = None,
                 logit_scale: float = MAX_LOGIT_SCALE, pretrained: Optional[str] = None,
                 train_cfg=None, test_cfg=None, data_preprocessor=None, init_cfg=None):
        # EncoderDecoder.__init__ builds a decode head; there is none, so BaseSegmentor's
        BaseSegmentor.__init__(self, data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        for key, part in (('backbone', backbone), ('text_encoder', text_encoder)):
            derive.check_registered(part, key)
        check_dense_clip_tower(backbone)
        self.class_names = class_names
        self.templates = templates_list(templates)
        if not logit_scale > 0:
            raise ValueError(f'model.logit_scale must be positive, got {logit_scale}')
        self.logit_scale = float(logit_scale)
        self.pretrained = pretrained
        if pretrained:  # both towers (the towers' own keys otherwise)
            backbone = dict(backbone, pretrained=pretrained)
            text_encoder = dict(text_encoder, pretrained=pretrained)
        self.backbone = MODELS.build(backbone)
        embed_dim = getattr(self.backbone, 'embed_dim', None)
        if embed_dim is None:
            raise ValueError(
                f'model.backbone: {type(self.backbone).__name__} returns no dense embeddings '
                '(its embed_dim is None), which zero-shot segmentation classifies; use '
                'CLIPResNetWithAttention, or CLIPVisionTransformer with get_embeddings=True')
        text_encoder = derive.with_derived(text_encoder, 'text_encoder', embed_dim=(
            embed_dim, f'model.backbone.output_dim={embed_dim}'))
        self.text_encoder = MODELS.build(text_encoder)
        self.requires_grad_(False)  # nothing is trained
        self.align_corners = False  # of the bilinear upsampling of the logits
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self._classifier: Optional[tuple[tuple, ZeroShotClassifier]] = None

    # ----------------------------------------------------------------- classes
    @property
    def class_names(self) -> tuple[str, ...]:
        return self._class_names

    @class_names.setter
    def class_names(self, names: Optional[Sequence[str]]) -> None:
        names = derive.class_names_list(names)
        if len(names) < 2:  # mmseg reads a single output channel as a binary sigmoid head
            raise ValueError(f'model.class_names={names}: zero-shot segmentation picks the best '
                             'of the names at every pixel, so it needs at least 2')
        self._class_names = tuple(names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def out_channels(self) -> int:
        return len(self.class_names)

    @property
    def tau(self) -> float:
        """The temperature of the logits (softmax of the demo's score maps)."""
        return 1.0 / self.logit_scale

    @contextlib.contextmanager
    def using_classes(self, class_names: Sequence[str]) -> Iterator[None]:
        """Predicts the given names inside the ``with`` block (open vocabulary)."""
        kept = self.class_names
        self.class_names = class_names
        try:
            yield
        finally:
            self.class_names = kept

    def classifier(self) -> ZeroShotClassifier:
        """The text classifier of the current class names, built once and reused until the
        names, the templates or a text weight change (loading weights bumps the versions)."""
        weights = tuple(self.text_encoder.parameters())
        key = (self.class_names, self.templates, weights[0].device,
               *((weight._version, weight.data_ptr()) for weight in weights))
        if self._classifier is None or self._classifier[0] != key:
            weight = build_classifier(self.text_encoder, self.class_names, self.templates)
            self._classifier = (key, ZeroShotClassifier(weight, self.logit_scale,
                                                        self.class_names))
        return self._classifier[1]

    def load_clip(self, weights: Union[str, os.PathLike, Mapping[str, torch.Tensor]],
                  source: Optional[str] = None) -> None:
        """Loads both towers from CLIP weights (``init_weights`` loads ``pretrained``).

        Args:
            weights: CLIP's weights with OpenAI's key names, bare or under ``clip.`` (the
                contrastive CLIP model's), as a state dict or a file that
                :func:`~denseclip.clip.reading.read_clip_weights` reads: an OpenAI archive,
                a state dict, or an mmengine checkpoint, such as one ``tools/train.py`` wrote.
            source: Where a state dict came from, for messages (default: the path).

        Raises:
            CheckpointError: no CLIP weights in ``weights``, or they do not fit the towers.
        """
        is_file = not isinstance(weights, Mapping)
        source = source or (os.fspath(weights) if is_file else 'CLIP state dict')
        try:
            weights = read_clip_weights(weights) if is_file else clip_state_dict(weights, source)
        except CheckpointError as err:
            raise CheckpointError(f'{err}. {CHECKPOINT_HINT}') from None
        self._load_state_dict(weights, source)
        self.pretrained = source
        MMLogger.get_current_instance().info(f'zero-shot segmentor: CLIP weights from {source}')

    def _load_state_dict(self, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
        """What the towers' ``init_weights`` do with ``pretrained`` (``load_tower``), from a
        CLIP state dict (OpenAI's keys, fp32): the ``visual.*`` part into the backbone, the
        rest into the text encoder, positional embeddings fitted, every key accounted for."""
        visual, text = visual_state_dict(state_dict), text_state_dict(state_dict)
        if not (visual and text):
            raise CheckpointError(f'{source!r} holds no {"text" if visual else "visual"} tower '
                                  f'of a CLIP model. {CHECKPOINT_HINT}')
        load_into(self.backbone, visual, source,
                  allowed_missing=('fpn*',),  # CLIPVisionTransformer's pyramid is not CLIP's
                  grid_positions=('positional_embedding', 'attnpool.positional_embedding'))
        load_into(self.text_encoder, text, source, text_positions=('positional_embedding',))

    # ----------------------------------------------------------------- mmseg hooks
    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """The dense embeddings ``[B, D, h, w]``."""
        *_, (_, dense) = self.backbone(inputs)
        return dense

    def _forward(self, inputs: torch.Tensor, data_samples=None) -> torch.Tensor:
        """Logits ``[B, K, h, w]`` at the dense embeddings' resolution."""
        return self.classifier().dense(self.extract_feat(inputs))

    def encode_decode(self, inputs: torch.Tensor, batch_img_metas: list[dict]) -> torch.Tensor:
        """Logits ``[B, K, H, W]`` over the input (an image, or a crop when sliding)."""
        return resize(self._forward(inputs), size=inputs.shape[2:], mode='bilinear',
                      align_corners=self.align_corners)

    def score_maps(self, inputs: torch.Tensor, class_names: Optional[Sequence[str]] = None,
                   size: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """Pixel-text cosine similarities ``[B, K, h, w]`` (resized to ``size`` if given), as
        :meth:`DenseCLIP.score_maps <denseclip.models.DenseCLIP.score_maps>` gives them.

        Args:
            inputs: Normalised images ``[B, 3, H, W]``.
            class_names: Names to match instead of ``class_names``.
            size: Output ``(H, W)``; bilinear.
        """
        names = self.class_names if class_names is None else class_names
        with self.using_classes(names):
            logits = self._forward(inputs)
        maps = logits / self.logit_scale
        return maps if size is None else resize(maps, size, mode='bilinear',
                                                align_corners=self.align_corners)

    def loss(self, inputs: torch.Tensor, data_samples) -> dict:
        raise RuntimeError(
            'zero-shot segmentor has nothing to train; its weights are the CLIP archive '
            '(model.pretrained). Evaluate it with tools/test.py CONFIG CLIP_ARCHIVE, or train a '
            'DenseCLIP config (configs/denseclip/) instead')
