"""CLIP's image preprocessing as mmcv transforms, and the packing of image-text pairs.

Registered in mmseg's ``TRANSFORMS``. A pipeline reads the image with mmcv's
``LoadImageFromFile`` (BGR, uint8), crops it to CLIP's square input with
:class:`CLIPResizeCenterCrop` (evaluation) or :class:`CLIPRandomResizedCrop` (training) and
packs it with :class:`PackImageTextInputs`; the model's data preprocessor normalises the
pixels and tokenises the caption. Resampling is bicubic with PIL, as in OpenAI's
preprocessing (:mod:`denseclip.clip.preprocess`); it acts on each channel alone, so BGR
images are resized as they are.
"""
import math

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import BaseDataElement
from mmseg.registry import TRANSFORMS
from PIL import Image

from denseclip.clip.preprocess import center_crop, resize_shortest


@TRANSFORMS.register_module()
class CLIPResizeCenterCrop(BaseTransform):
    """CLIP's evaluation crop: the shorter side resized to ``size``, the centre square kept.

    Required keys: ``img``. Modified keys: ``img``, ``img_shape``.
    """

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f'size must be a positive number of pixels, got {size}')
        self.size = size

    def transform(self, results: dict) -> dict:
        image = center_crop(resize_shortest(results['img'], self.size), self.size)
        results['img'] = np.ascontiguousarray(image)
        results['img_shape'] = image.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(size={self.size})'


@TRANSFORMS.register_module()
class CLIPRandomResizedCrop(BaseTransform):
    """A random crop of ``scale`` of the image's area and aspect ratio in ``ratio``, resized to
    ``size x size`` (bicubic): CLIP's training augmentation.

    The CLIP paper's only augmentation is "a random square crop from resized images"; the
    default ``scale=(0.9, 1.0)`` (and ``ratio=(3/4, 4/3)``) keeps nearly the whole image, as
    open_clip trains CLIP. The crop is drawn as torchvision's ``RandomResizedCrop`` does
    (log-uniform ratio, ten tries, then the centred crop of the nearest allowed ratio).

    Required keys: ``img``. Modified keys: ``img``, ``img_shape``.
    """

    def __init__(self, size: int, scale: tuple[float, float] = (0.9, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        if size < 1:
            raise ValueError(f'size must be a positive number of pixels, got {size}')
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f'scale must be (low, high) with 0 < low <= high <= 1, got {scale}')
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f'ratio must be (low, high) with 0 < low <= high, got {ratio}')
        self.size = size
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """A random ``(top, left, crop_height, crop_width)`` inside a ``height x width`` image."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * np.random.uniform(*self.scale)
            aspect = math.exp(np.random.uniform(*log_ratio))
            crop_w = int(round(math.sqrt(target * aspect)))
            crop_h = int(round(math.sqrt(target / aspect)))
            if 0 < crop_w <= width and 0 < crop_h <= height:
                top = np.random.randint(0, height - crop_h + 1)
                left = np.random.randint(0, width - crop_w + 1)
                return top, left, crop_h, crop_w
        aspect = min(max(width / height, self.ratio[0]), self.ratio[1])
        crop_w, crop_h = (width, int(round(width / aspect))) if width / height < aspect else (
            int(round(height * aspect)), height)
        crop_w, crop_h = min(crop_w, width), min(crop_h, height)
        return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w

    def transform(self, results: dict) -> dict:
        image = results['img']
        top, left, crop_h, crop_w = self.crop_box(*image.shape[:2])
        box = (left, top, left + crop_w, top + crop_h)
        resized = Image.fromarray(image).resize((self.size, self.size),
                                                Image.Resampling.BICUBIC, box=box)
        results['img'] = np.asarray(resized)
        results['img_shape'] = (self.size, self.size)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(size={self.size}, scale={self.scale}, '
                f'ratio={self.ratio})')


@TRANSFORMS.register_module()
class PackImageTextInputs(BaseTransform):
    """Packs an image and its caption: ``inputs`` (a uint8 ``[3, H, W]`` tensor, channels as
    loaded) and a ``BaseDataElement`` whose metainfo holds the caption and ``meta_keys``.

    The caption is tokenised by the model's data preprocessor, which knows the model's
    context length.
    """

    def __init__(self, meta_keys: tuple[str, ...] = ('img_path', 'ori_shape', 'img_shape')):
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        image = results['img']
        if image.ndim == 2:
            image = image[..., None]
        inputs = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))  # HWC -> CHW
        metainfo = {key: results[key] for key in self.meta_keys if key in results}
        metainfo['caption'] = results['caption']
        return dict(inputs=inputs, data_samples=BaseDataElement(metainfo=metainfo))

    def __repr__(self) -> str:
        return f'{type(self).__name__}(meta_keys={self.meta_keys})'
