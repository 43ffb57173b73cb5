"""Contrastive training of CLIP itself (both towers) as an mmengine model."""
import math
import os
from typing import Optional, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel, ImgDataPreprocessor
from mmengine.structures import BaseDataElement
from mmseg.registry import MODELS

from denseclip.clip import CLIP, CLIP_MEAN, CLIP_STD, tokenize
from denseclip.clip.checkpoint import load_into
from denseclip.clip.loss import gathered_contrastive_loss
from denseclip.clip.reading import ARCHIVE_METADATA, read_clip_weights

#: CLIP clamps its learnable logit scale at 100 (the parameter at log(100)).
MAX_LOG_LOGIT_SCALE = math.log(100)
Samples = list[BaseDataElement]


@MODELS.register_module()
class CLIPDataPreprocessor(ImgDataPreprocessor):
    """mmengine's image preprocessor (CLIP's mean and std, BGR -> RGB) that also tokenises each
    sample's ``caption`` into ``sample.text`` (``[context_length]`` token ids).

    Args:
        context_length: Token positions of the text tower (set by :class:`CLIPContrastive`).
        truncate: Cut captions longer than ``context_length`` tokens and end them with the
            end-of-text token, as CLIP does for web captions; with ``False`` such a caption is
            an error that names its image.
        mean, std, bgr_to_rgb: As for ``ImgDataPreprocessor``; the defaults suit images
            loaded by ``LoadImageFromFile`` (BGR, 0-255).
    """

    def __init__(self, context_length: int = 77, truncate: bool = True,
                 mean: tuple[float, ...] = CLIP_MEAN, std: tuple[float, ...] = CLIP_STD,
                 bgr_to_rgb: bool = True, non_blocking: bool = False):
        super().__init__(mean=mean, std=std, bgr_to_rgb=bgr_to_rgb, non_blocking=non_blocking)
        self.context_length = context_length
        self.truncate = truncate

    def tokens(self, caption: str, sample: BaseDataElement) -> torch.Tensor:
        try:
            return tokenize(caption, self.context_length, truncate=self.truncate)[0]
        except ValueError as err:
            raise ValueError(f'caption of {sample.metainfo.get("img_path", "a sample")!r}: '
                             f'{err}. Set model.data_preprocessor.truncate=True to cut long '
                             'captions') from None

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        samples = data['data_samples']
        if not samples or any('caption' not in sample for sample in samples):
            raise ValueError('CLIPDataPreprocessor needs data samples with a caption in their '
                             'metainfo (packed by PackImageTextInputs)')
        device = data['inputs'].device
        for sample in samples:
            sample.text = self.tokens(sample.caption, sample).to(device)
        return data


@MODELS.register_module()
class CLIPContrastive(BaseModel):
    """CLIP trained with its contrastive loss over the global batch (all ranks' pairs).

    Call graph::

        forward(mode='loss')    -> embed -> gathered_contrastive_loss
        forward(mode='predict') -> embed -> samples with image_embedding, text_embedding
        forward(mode='tensor')  -> embed -> (image_features, text_features)

    The model's state dict is OpenAI's CLIP state dict prefixed by ``clip.``. The logit scale
    is CLIP's: a parameter initialised to ``log(1/0.07)`` and clamped in place to ``log(100)``
    before each training forward, i.e. after every optimiser step, as CLIP clamps it.

    Args:
        arch: :class:`~denseclip.clip.CLIP`'s arguments (``embed_dim``, ``image_resolution``,
            ``vision_layers``, ...).
        pretrained: An OpenAI archive (``pretrained/RN50.pt``), a CLIP state dict or a
            checkpoint of this model (as ``tools/train.py`` writes it) to fine-tune from, read
            by :func:`~denseclip.clip.reading.read_clip_weights` in :meth:`init_weights`
            (positional embeddings fitted to ``arch``); ``None`` trains from OpenAI's
            initialisation.
        data_preprocessor: Overrides of :class:`CLIPDataPreprocessor` (``truncate``, ...); its
            ``context_length`` is ``arch['context_length']``.
        init_cfg: Unused by this model; kept for mmengine.
    """

    def __init__(self, arch: dict, pretrained: Optional[Union[str, os.PathLike]] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        preprocessor = {'type': 'CLIPDataPreprocessor', **(data_preprocessor or {})}
        context_length = arch.get('context_length', 77)
        if preprocessor.setdefault('context_length', context_length) != context_length:
            raise ValueError(f'model.data_preprocessor.context_length '
                             f'({preprocessor["context_length"]}) differs from '
                             f'model.arch.context_length ({context_length}); leave it unset')
        super().__init__(data_preprocessor=MODELS.build(preprocessor), init_cfg=init_cfg)
        self.clip = CLIP(**arch)
        self.clip.reset_image_parameters()  # OpenAI's initialisation of the whole model
        self.pretrained = os.fspath(pretrained) if pretrained else None

    def init_weights(self) -> None:
        """Loads ``pretrained`` into ``self.clip``, if given."""
        if self.pretrained is None:
            return
        load_into(self.clip, read_clip_weights(self.pretrained), source=self.pretrained,
                  allowed_unexpected=ARCHIVE_METADATA,
                  text_positions=('positional_embedding', ),
                  grid_positions=('visual.positional_embedding',
                                  'visual.attnpool.positional_embedding'))

    def embed(self, inputs: torch.Tensor,
              data_samples: Samples) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised image and caption embeddings, ``[B, embed_dim]`` each."""
        if len(data_samples) != inputs.shape[0]:
            raise ValueError(f'{inputs.shape[0]} images but {len(data_samples)} data samples')
        tokens = torch.stack([sample.text for sample in data_samples])  # [B, L]
        image_features = F.normalize(self.clip.encode_image(inputs), dim=-1)
        text_features = F.normalize(self.clip.encode_text(tokens), dim=-1)
        return image_features, text_features

    def forward(self, inputs: torch.Tensor, data_samples: Samples,
                mode: str = 'tensor') -> Union[dict, Samples, tuple]:
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.embed(inputs, data_samples)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def loss(self, inputs: torch.Tensor, data_samples: Samples) -> dict:
        """``loss_contrastive`` (this rank's share of the global-batch loss), and logged:
        ``logit_scale`` (the multiplier ``exp(logit_scale)``, at most 100) and ``accuracy``
        (how often an image's or caption's best match in the global batch is its pair)."""
        with torch.no_grad():
            self.clip.logit_scale.clamp_(max=MAX_LOG_LOGIT_SCALE)
        image_features, text_features = self.embed(inputs, data_samples)
        result = gathered_contrastive_loss(image_features, text_features, self.clip.logit_scale)
        return dict(loss_contrastive=result['loss'], accuracy=result['accuracy'],
                    logit_scale=self.clip.logit_scale.detach().exp())

    def predict(self, inputs: torch.Tensor, data_samples: Samples) -> Samples:
        """The samples with ``image_embedding`` and ``text_embedding`` (normalised, ``[D]``)."""
        image_features, text_features = self.embed(inputs, data_samples)
        for sample, image, text in zip(data_samples, image_features, text_features):
            sample.image_embedding = image
            sample.text_embedding = text
        return data_samples
