"""CLIP's image preprocessing as pure functions: resize, centre crop, normalise.

The steps and constants are those of OpenAI's CLIP: the shorter side is resized to the model's
input resolution with bicubic resampling, the centre square is cropped, and RGB values are
normalised by CLIP's mean and standard deviation. Resizing uses PIL's bicubic filter, as OpenAI
does (through torchvision on PIL images), so preprocessed images match theirs closely; cv2's
bicubic kernel differs slightly and is not used here.
"""
import io
import os

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

#: CLIP's per-channel RGB mean, on the 0-255 scale.
CLIP_MEAN = (0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255)
#: CLIP's per-channel RGB standard deviation, on the 0-255 scale.
CLIP_STD = (0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255)


def _check_image(image: np.ndarray, name: str = 'image') -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or (
            image.shape[2] != 3):
        described = (f'{type(image).__name__}' if not isinstance(image, np.ndarray)
                     else f'{image.dtype} array of shape {image.shape}')
        raise ValueError(f'{name} must be a uint8 array of shape [H, W, 3] (RGB), got a '
                         f'{described}')
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f'{name} is empty: shape {image.shape}')


def resize_shortest(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes an HWC uint8 image so that its shorter side is ``size``, keeping the aspect ratio.

    Bicubic resampling with PIL. The longer side becomes ``int(size * long / short)`` (rounded
    down), as in torchvision's ``Resize(size)`` that OpenAI's preprocessing uses.
    """
    _check_image(image)
    if size < 1:
        raise ValueError(f'size must be a positive number of pixels, got {size}')
    height, width = image.shape[:2]
    if height <= width:
        new_height, new_width = size, int(size * width / height)
    else:
        new_height, new_width = int(size * height / width), size
    if (new_height, new_width) == (height, width):
        return image.copy()
    resized = Image.fromarray(image).resize((new_width, new_height), Image.Resampling.BICUBIC)
    return np.asarray(resized)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size x size`` square of an HWC image (offsets rounded as torchvision does).

    Raises:
        ValueError: the image is smaller than ``size`` along a side (it is never padded).
    """
    if image.ndim < 2:
        raise ValueError(f'image must have shape [H, W, ...], got {image.shape}')
    height, width = image.shape[:2]
    if height < size or width < size:
        raise ValueError(f'cannot crop {size}x{size} pixels from an image of {height}x{width} '
                         f'(H x W); resize its shorter side to at least {size} first')
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image[top:top + size, left:left + size]


def normalize(image_rgb: np.ndarray) -> torch.Tensor:
    """``(x - CLIP_MEAN) / CLIP_STD`` of a uint8 HWC RGB image, as float32 ``[3, H, W]``."""
    _check_image(image_rgb, 'image_rgb')
    mean = np.asarray(CLIP_MEAN, dtype=np.float32)
    std = np.asarray(CLIP_STD, dtype=np.float32)
    normalized = (image_rgb.astype(np.float32) - mean) / std  # [H, W, 3]
    return torch.from_numpy(np.ascontiguousarray(normalized.transpose(2, 0, 1)))  # HWC -> CHW


def preprocess(image_rgb: np.ndarray, resolution: int) -> torch.Tensor:
    """CLIP's input ``[3, resolution, resolution]`` from a uint8 HWC RGB image of any size."""
    return normalize(center_crop(resize_shortest(image_rgb, resolution), resolution))


class ImageError(ValueError):
    """An image file that cannot be read or decoded. ``str(err)`` is ``'PATH: REASON'``.

    Attributes:
        path: The file.
        reason: Why it cannot be used, without the path.
    """

    def __init__(self, path: str, reason: str):
        super().__init__(f'{path}: {reason}')
        self.path, self.reason = path, reason


def read_image(path: str | os.PathLike, channel_order: str = 'rgb',
               decoder: str = 'cv2') -> np.ndarray:
    """The one reader of image files for every tool: a uint8 ``[H, W, 3]`` array.

    Grey, palette and alpha images become three channels. Every problem is an
    :class:`ImageError` naming the file: missing, unreadable, empty, damaged or not an image.

    Args:
        path: The image file (any name; the content decides).
        channel_order: ``'rgb'`` or ``'bgr'`` (what OpenCV and mmseg's pipelines use).
        decoder: ``'cv2'`` decodes as mmseg's ``LoadImageFromFile`` does (OpenCV, EXIF
            orientation applied), for the segmentation tools; ``'pil'`` as OpenAI's CLIP
            preprocessing does (Pillow, EXIF orientation ignored), for zero-shot classification.
    """
    path = os.fspath(path)
    if channel_order not in ('rgb', 'bgr') or decoder not in ('cv2', 'pil'):
        raise ValueError(f'channel_order must be rgb or bgr and decoder cv2 or pil, got '
                         f'{channel_order!r}, {decoder!r}')
    if not os.path.isfile(path):
        raise ImageError(path, 'cannot be read: ' + (
            'it is a folder, not an image' if os.path.isdir(path) else 'no such file'))
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise ImageError(path, f'cannot be read: {err.strerror or err}') from None
    if not data.size:
        raise ImageError(path, 'not a readable image (the file is empty)')
    if decoder == 'cv2':
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)  # BGR
        if image is not None:
            return image if channel_order == 'bgr' else np.ascontiguousarray(image[..., ::-1])
    else:
        try:
            with Image.open(io.BytesIO(data.tobytes())) as decoded:
                image = np.asarray(decoded.convert('RGB'))
            return image if channel_order == 'rgb' else np.ascontiguousarray(image[..., ::-1])
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            pass
    raise ImageError(path, 'not a readable image (empty, corrupt or of an unknown format)')


def read_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as CLIP's preprocessing reads it (Pillow), RGB: :func:`read_image`."""
    return read_image(path, 'rgb', decoder='pil')
