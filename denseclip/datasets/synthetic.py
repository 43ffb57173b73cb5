"""A deterministic synthetic dataset laid out exactly like ADE20K, with
captions, and an ImageFolder split of the same classes (one object per
image) for zero-shot classification.

Each scene shows a noisy, low-saturation background ("other", label 0) with
a few rectangles, ellipses, polygons and blobs drawn on top. Shape ``k`` is
filled with the appearance of class ``k`` (1..K): a distinctive colour *and*
texture (stripes, checker, dots, gradient or cloudy noise), jittered per
instance and covered by pixel noise, so a small network must look at colour
and local texture to segment it. Labels follow the drawn shapes exactly. The
caption of a scene names the classes left visible in its label map, largest
first ("a photo of a wall, a floor and a bed."). An ImageFolder image shows
one large shape of one class over the same background.

This module lays the data out and names it; the drawing lives in
:mod:`.synthetic_render`, the markers that make writing idempotent in
:mod:`.synthetic_markers`.

The classes are named after the first K classes of ADE20K, so configs can
use ``ADE20KDataset`` with ``metainfo=synthetic_metainfo(K)`` and
``reduce_zero_label=True`` (label 0 -> 255, class k -> k - 1).

Layout written under ``root``::

    ADEChallengeData2016/                  # generate_synthetic_ade20k
        images/{training,validation}/ADE_{train,val}_00000001.jpg
        annotations/{training,validation}/ADE_{train,val}_00000001.png
        captions/{training,validation}.jsonl
        synthetic.json   # marker with the parameters, written last
    imagefolder/                           # generate_synthetic_imagefolder
        {training,validation}/<class name>/0001.jpg
        {training,validation}.jsonl
        synthetic.json

A captions file holds one JSON object per line, the image path relative to
``ADEChallengeData2016`` or ``imagefolder``::

    {"image": "images/training/ADE_train_00000001.jpg",
     "caption": "a photo of a wall and a floor."}        # on one line
"""
import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from mmseg.datasets import ADE20KDataset

from .synthetic_markers import MARKER, PARTIAL_MARKER, generate_once
from .synthetic_render import (MIN_OBJECT_FRACTION, class_appearance,
                               render_object, render_scene)

# The markers, MIN_OBJECT_FRACTION and the renderers stay importable from
# here, where the tests and tools have always found them.
__all__ = [
    'CAPTION_TEMPLATES', 'MARKER', 'MIN_OBJECT_FRACTION', 'PARTIAL_MARKER',
    'caption', 'generate_synthetic_ade20k', 'generate_synthetic_imagefolder',
    'render_object', 'render_scene', 'synthetic_metainfo'
]

DATASET_DIR = 'ADEChallengeData2016'
IMAGE_FOLDER_DIR = 'imagefolder'
CAPTION_DIR = 'captions'
FORMAT_VERSION = 2  # 2: captions and the ImageFolder split; images unchanged
# (split folder, file-name stem, parameter holding its size); the position
# in this tuple is the split's entry in the per-image seed.
SPLITS = (('training', 'ADE_train', 'num_train'),
          ('validation', 'ADE_val', 'num_val'))
MAX_CLASSES = len(ADE20KDataset.METAINFO['classes'])  # 150
JPEG_QUALITY = 95
# Caption phrasings, one drawn per image; '{}' receives the class names,
# each with its article: 'a photo of {}.' -> 'a photo of a tree and a road.'
CAPTION_TEMPLATES = ('a photo of {}.', 'a picture of {}.',
                     'an image of {}.', 'a rendering of {}.')


def synthetic_metainfo(num_classes: int) -> dict:
    """Return the first ``num_classes`` ADE20K class names and palette.

    Args:
        num_classes: Number of foreground classes K (1..150).

    Returns:
        ``dict(classes=tuple, palette=list)`` to pass as ``metainfo`` of
        ``ADE20KDataset``; names are kept verbatim (e.g. ``'bed '``) because
        mmseg matches them against its own class list.
    """
    _check_range('num_classes', num_classes, 1, MAX_CLASSES)
    meta = ADE20KDataset.METAINFO
    return dict(
        classes=tuple(meta['classes'][:num_classes]),
        palette=[list(c) for c in meta['palette'][:num_classes]])


def generate_synthetic_ade20k(root: str | Path,
                              num_classes: int = 8,
                              num_train: int = 200,
                              num_val: int = 40,
                              image_size: int | tuple[int, int] = 128,
                              seed: int = 0,
                              overwrite: bool = False,
                              captions: bool = True) -> Path:
    """Write the synthetic dataset under ``root/ADEChallengeData2016``.

    Idempotent: a complete dataset written with the same parameters (and
    the same format version) is left untouched. A dataset with other
    parameters, an older format, or one left half-written, raises unless
    ``overwrite`` is set; a folder without our marker is never deleted.

    Args:
        root: Folder that will contain ``ADEChallengeData2016``.
        num_classes: Number of foreground classes K (labels 1..K, 0 = other).
        num_train: Number of training images.
        num_val: Number of validation images.
        image_size: Side length, or ``(height, width)``, of every image.
        seed: Seed; the same parameters give byte-identical files.
        overwrite: Replace an existing synthetic dataset whose parameters
            differ or which is incomplete.
        captions: Also write ``captions/{training,validation}.jsonl``.

    Returns:
        Path of the ``ADEChallengeData2016`` folder.

    Raises:
        ValueError: If a parameter is out of range.
        FileExistsError: If the folder holds data without our marker
            (even with ``overwrite``), or a synthetic dataset that has other
            parameters or is incomplete and ``overwrite`` is false.
        OSError: If an image cannot be written.
    """
    if not isinstance(captions, bool):
        raise ValueError(f'captions must be True or False, got {captions!r}')
    params = dict(_make_params(num_classes, num_train, num_val, image_size,
                               seed, max_count=10**8 - 1),  # 8-digit names
                  captions=captions)
    data_dir = Path(root) / DATASET_DIR
    expected = {data_dir / kind / split: params[count_key]
                for split, _, count_key in SPLITS
                for kind in ('images', 'annotations')}
    if captions:
        expected.update({data_dir / CAPTION_DIR / f'{split}.jsonl': None
                         for split, _, _ in SPLITS})
    owned = ('images', 'annotations', CAPTION_DIR)
    return generate_once(data_dir, params, expected, owned, overwrite,
                         _write_scenes)


def generate_synthetic_imagefolder(root: str | Path,
                                   num_classes: int = 8,
                                   num_train: int = 40,
                                   num_val: int = 20,
                                   image_size: int | tuple[int, int] = 128,
                                   seed: int = 0,
                                   overwrite: bool = False) -> Path:
    """Write a zero-shot classification split under ``root/imagefolder``.

    A standard ImageFolder tree, ``{training,validation}/<class>/0001.jpg``
    with the stripped ADE20K names of the classes of
    :func:`generate_synthetic_ade20k`: every image shows one large shape of
    its folder's class (at least ``MIN_OBJECT_FRACTION`` of the image) over
    the scenes' background, painted with the scenes' appearance model. Each
    split also gets captions, ``{training,validation}.jsonl``, with image
    paths relative to ``imagefolder`` ("a photo of a tree."). Idempotency,
    markers and ``overwrite`` behave as in :func:`generate_synthetic_ade20k`.

    Args:
        root: Folder that will contain ``imagefolder``.
        num_classes: Number of classes K, named after the first K of ADE20K.
        num_train: Training images per class.
        num_val: Validation images per class.
        image_size: Side length, or ``(height, width)``, of every image.
        seed: Seed; the same parameters give byte-identical files.
        overwrite: Replace an existing split whose parameters differ or
            which is incomplete.

    Returns:
        Path of the ``imagefolder`` folder.

    Raises:
        ValueError, FileExistsError, OSError: As
            :func:`generate_synthetic_ade20k`.
    """
    params = _make_params(num_classes, num_train, num_val, image_size, seed,
                          max_count=9999)  # 4-digit file names
    data_dir = Path(root) / IMAGE_FOLDER_DIR
    names = _stripped_names(num_classes)
    expected = {data_dir / split / name: params[count_key]
                for split, _, count_key in SPLITS for name in names}
    expected.update({data_dir / f'{split}.jsonl': None
                     for split, _, _ in SPLITS})
    owned = tuple(split for split, _, _ in SPLITS) + tuple(
        f'{split}.jsonl' for split, _, _ in SPLITS)
    return generate_once(data_dir, params, expected, owned, overwrite,
                         _write_imagefolder)


def caption(names: Sequence[str],
            template: str = CAPTION_TEMPLATES[0]) -> str:
    """Name classes in one sentence: 'a photo of a wall, a floor and a bed.'.

    Args:
        names: Class names, in the order to list them; surrounding spaces
            are stripped (ADE20K has ``'bed '``).
        template: Sentence with one ``{}`` for the listed names.

    Returns:
        The caption, each name with 'a' or 'an' before it.

    Raises:
        ValueError: If ``names`` is empty.
    """
    if not names:
        raise ValueError('a caption needs at least one class name')
    items = [('an ' if name.strip()[0] in 'aeiou' else 'a ') + name.strip()
             for name in names]
    listed = items[0] if len(items) == 1 else \
        ', '.join(items[:-1]) + ' and ' + items[-1]
    return template.format(listed)


# --------------------------------------------------------------------------
# Writing: scenes, the ImageFolder split, captions.
# --------------------------------------------------------------------------


def _write_scenes(data_dir: Path, params: dict) -> None:
    num_classes, seed = params['num_classes'], params['seed']
    appearances = [class_appearance(k) for k in range(num_classes + 1)]
    names = _stripped_names(num_classes)
    for split_id, (split, stem, count_key) in enumerate(SPLITS):
        img_dir = data_dir / 'images' / split
        ann_dir = data_dir / 'annotations' / split
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        records = []
        for i in range(params[count_key]):
            rng = np.random.default_rng([seed, split_id, i])
            img, label = render_scene(rng, params['image_size'], appearances)
            name = f'{stem}_{i + 1:08d}'
            _imwrite(img_dir / f'{name}.jpg', img[..., ::-1],
                     [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            _imwrite(ann_dir / f'{name}.png', label, [])
            # drawn after the scene, so the images do not depend on captions
            template = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))]
            records.append(dict(image=f'images/{split}/{name}.jpg',
                                caption=caption(_visible(label, names),
                                                template)))
        if params['captions']:
            _write_jsonl(data_dir / CAPTION_DIR / f'{split}.jsonl', records)


def _write_imagefolder(data_dir: Path, params: dict) -> None:
    num_classes, seed = params['num_classes'], params['seed']
    appearances = [class_appearance(k) for k in range(num_classes + 1)]
    for split_id, (split, _, count_key) in enumerate(SPLITS):
        records = []
        for k, name in enumerate(_stripped_names(num_classes), start=1):
            (data_dir / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(params[count_key]):
                # split entry len(SPLITS) + split_id keeps these streams
                # apart from the scenes' (seed, split_id, i)
                rng = np.random.default_rng(
                    [seed, len(SPLITS) + split_id, k, i])
                img, _ = render_object(rng, params['image_size'],
                                       appearances, k)
                path = f'{split}/{name}/{i + 1:04d}.jpg'
                _imwrite(data_dir / path, img[..., ::-1],
                         [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                template = CAPTION_TEMPLATES[
                    rng.integers(len(CAPTION_TEMPLATES))]
                records.append(dict(image=path,
                                    caption=caption([name], template)))
        _write_jsonl(data_dir / f'{split}.jsonl', records)


def _stripped_names(num_classes: int) -> list[str]:
    return [name.strip()
            for name in synthetic_metainfo(num_classes)['classes']]


def _visible(label: np.ndarray, names: list[str]) -> list[str]:
    """Names of the classes in a label map, largest area first."""
    area = np.bincount(label.ravel(), minlength=len(names) + 1)[1:]
    order = np.argsort(-area, kind='stable')
    return [names[j] for j in order if area[j] > 0]


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(json.dumps(r) + '\n' for r in records))


def _imwrite(path: Path, array: np.ndarray, flags: list[int]) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(array), flags):
        raise OSError(f'cv2 could not write {path}')


# --------------------------------------------------------------------------
# Parameters.
# --------------------------------------------------------------------------


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(
            f'{name} must be an integer in [{low}, {high}], got {value!r}')


def _make_params(num_classes: int, num_train: int, num_val: int,
                 image_size: int | tuple[int, int], seed: int,
                 max_count: int) -> dict:
    """Validate the arguments and return them as a JSON-able dict."""
    _check_range('num_classes', num_classes, 1, MAX_CLASSES)
    _check_range('num_train', num_train, 1, max_count)
    _check_range('num_val', num_val, 1, max_count)
    _check_range('seed', seed, 0, 2**63 - 1)
    size = (image_size, image_size) if isinstance(image_size, int) \
        else tuple(image_size)
    if len(size) != 2:
        raise ValueError(f'image_size must be an int or (height, width), '
                         f'got {image_size!r}')
    for side in size:
        _check_range('image_size', side, 16, 4096)
    return dict(
        version=FORMAT_VERSION,
        num_classes=int(num_classes),
        num_train=int(num_train),
        num_val=int(num_val),
        image_size=[int(s) for s in size],
        seed=int(seed))
