"""CLIP's image preprocessing as pure functions: resize, centre crop, normalise.

The steps and constants are those of OpenAI's CLIP: the shorter side is resized to the model's
input resolution with bicubic resampling, the centre square is cropped, and RGB values are
normalised by CLIP's mean and standard deviation. Resizing uses PIL's bicubic filter, as OpenAI
does (through torchvision on PIL images), so preprocessed images match theirs closely; cv2's
bicubic kernel differs slightly and is not used here.
"""
import os

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


def read_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as a uint8 ``[H, W, 3]`` RGB array (grey and RGBA are converted).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file cannot be decoded as an image (the message names it).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'image file {path!r} does not exist')
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert('RGB'))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f'cannot decode image {path!r}: the file is damaged or not an image '
                         f'({type(err).__name__}: {err})') from None
