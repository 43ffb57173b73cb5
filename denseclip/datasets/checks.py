"""The dataset checks, one function each: what is wrong with a dataset, a pair or a sample.

Each check returns its problems as messages (or nothing) instead of raising, and each message
names the config key, the file, what was expected and how to fix it. :class:`CheckedDataset`
raises the first problem it meets while a job runs; :func:`scan_dataset`
(``tools/check_dataset.py``) runs every check over every sample up front and lists them all.
"""
import os
import os.path as osp
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

import cv2
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmcv.transforms import LoadAnnotations as MMCVLoadAnnotations
from mmseg.datasets.transforms import LoadAnnotations
from PIL import Image

MAX_LISTED = 3  # file names quoted in a message
EXIF_ORIENTATION = 0x0112
TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
# decoding flags with which mmcv (OpenCV or Pillow) applies the EXIF orientation
ORIENTING_COLOR_TYPES = ('color', 'grayscale')


def listed(paths: list[str], max_listed: Optional[int] = MAX_LISTED) -> str:
    """``'a', 'b', 'c' and 7 more`` (all of them when ``max_listed`` is ``None``)."""
    shown = paths if max_listed is None else paths[:max_listed]
    more = f' and {len(paths) - len(shown)} more' if len(paths) > len(shown) else ''
    return ', '.join(repr(path) for path in shown) + more


def _files(folder: str, suffix: str) -> list[str]:
    """Paths relative to ``folder`` of the files ending in ``suffix``, recursively."""
    found = []
    for root, _, names in os.walk(folder):
        found += [osp.relpath(osp.join(root, name), folder) for name in names
                  if name.endswith(suffix)]
    return found


def seg_datasets(dataset: Any, key: str) -> Iterator[tuple[Any, str]]:
    """The folder-based segmentation datasets inside ``dataset`` with their config keys."""
    if hasattr(dataset, 'data_prefix') and hasattr(dataset, 'seg_map_suffix'):
        yield dataset, key
    elif hasattr(dataset, 'datasets'):  # ConcatDataset
        for index, child in enumerate(dataset.datasets):
            yield from seg_datasets(child, f'{key}.datasets.{index}')
    elif hasattr(dataset, 'dataset'):  # RepeatDataset, ClassBalancedDataset, ...
        yield from seg_datasets(dataset.dataset, f'{key}.dataset')


def lazy(dataset_cfg: dict) -> dict:
    """A copy of ``dataset_cfg`` whose datasets, wrapped ones included, list no files when
    built (``lazy_init=True``), so that the folders can be checked first."""
    cfg = dict(dataset_cfg, lazy_init=True)
    if isinstance(cfg.get('dataset'), dict):
        cfg['dataset'] = lazy(cfg['dataset'])
    if isinstance(cfg.get('datasets'), (list, tuple)):
        cfg['datasets'] = [lazy(child) if isinstance(child, dict) else child
                           for child in cfg['datasets']]
    return cfg


# ----------------------------------------------------------------- classes, folders, pairs
def classes_problem(dataset: Any, key: str) -> Optional[str]:
    """The dataset names its classes (mmseg's ``BaseSegDataset`` has none of its own)."""
    if dataset.metainfo.get('classes'):
        return None
    return (f'{key}: the dataset has no class names (metainfo.classes): DenseCLIP reads them '
            'with its text encoder and sizes its outputs by them. Set '
            f"{key}.metainfo=dict(classes=('name 0', 'name 1', ...)) in label order "
            '(docs/custom_dataset.md).')


def folder_problem(dataset: Any, key: str) -> Optional[str]:
    """The image (and label) folder of a dataset that is not yet listed exist and hold images."""
    if dataset.backend_args:  # a remote store: nothing to check locally
        return None
    img_dir = dataset.data_prefix.get('img_path') or dataset.data_root or ''
    ann_dir = dataset.data_prefix.get('seg_map_path')
    where = f'(data_root={dataset.data_root!r}, data_prefix={dict(dataset.data_prefix)!r})'
    fix = (f'Put the dataset there, or point the config at it, e.g. --cfg-options '
           f'{key}.data_root=DIR')
    if not osp.isdir(img_dir):
        return f'{key}: the image folder {img_dir!r} does not exist {where}. {fix}'
    if ann_dir and not osp.isdir(ann_dir):
        return f'{key}: the label folder {ann_dir!r} does not exist {where}. {fix}'
    if not dataset.ann_file and not _files(img_dir, dataset.img_suffix):
        return (f'{key}: the image folder {img_dir!r} holds no images ending in '
                f'{dataset.img_suffix!r} (img_suffix) {where}. Copy the images there, or set '
                f'{key}.img_suffix to their extension.')
    return None


def listing_problem(key: str, err: Exception) -> str:
    """mmseg failed to list the files of a dataset whose folders exist."""
    return f'{key}: the dataset could not be listed ({type(err).__name__}: {err})'


def empty_problem(key: str) -> str:
    """A dataset without samples."""
    return (f'{key}: the dataset is empty (no samples after listing and filtering); check '
            'data_root, data_prefix and ann_file')


def pair_problems(dataset: Any, key: str, max_listed: Optional[int] = MAX_LISTED) -> list[str]:
    """Every image has a label map, and (for folder datasets) every label map an image.

    Args:
        dataset: A listed (fully initialised) segmentation dataset.
        key: Its config key, for the messages.
        max_listed: File names quoted per message; ``None`` quotes them all.
    """
    ann_dir = dataset.data_prefix.get('seg_map_path')
    if dataset.backend_args or not ann_dir:
        return []
    problems = []
    infos = [dataset.get_data_info(index) for index in range(len(dataset))]
    unlabelled = [info['img_path'] for info in infos
                  if info.get('seg_map_path') and not osp.isfile(info['seg_map_path'])]
    if unlabelled:
        problems.append(
            f'{key}: {len(unlabelled)} of {len(infos)} images have no label map: '
            f'{listed(unlabelled, max_listed)}. Each image needs a label map of the same name '
            f'ending in {dataset.seg_map_suffix!r} (seg_map_suffix) in {ann_dir!r}; add them, '
            'or remove those images.')
    if dataset.ann_file:  # a split file may list a subset of the label folder
        return problems
    img_dir = dataset.data_prefix.get('img_path') or dataset.data_root or ''
    images = {osp.relpath(info['img_path'], img_dir)[:-len(dataset.img_suffix)]
              for info in infos}
    suffix = dataset.seg_map_suffix
    orphans = sorted(osp.join(ann_dir, name) for name in _files(ann_dir, suffix)
                     if name[:-len(suffix)] not in images)
    if orphans:
        problems.append(
            f'{key}: {len(orphans)} label maps have no image: {listed(orphans, max_listed)}. '
            f'Each label map needs an image of the same name ending in {dataset.img_suffix!r} '
            f'(img_suffix) in {img_dir!r}; add the images, or remove those label maps.')
    return problems


# ----------------------------------------------------------------- one sample
def sample_loaders(dataset: Any) -> tuple[LoadImageFromFile, MMCVLoadAnnotations]:
    """The transforms of the dataset's pipeline that read a sample's image and label map
    (mmseg's defaults where the pipeline has none at its top level)."""
    transforms = getattr(dataset.pipeline, 'transforms', [])
    image = next((t for t in transforms if isinstance(t, LoadImageFromFile)), None)
    labels = next((t for t in transforms if isinstance(t, MMCVLoadAnnotations)), None)
    return (image or LoadImageFromFile(backend_args=dataset.backend_args),
            labels or LoadAnnotations(backend_args=dataset.backend_args))


def orientation_applied(dataset: Any) -> bool:
    """Whether the pipeline turns images by their EXIF orientation when it decodes them.

    Label maps are decoded ``'unchanged'`` by mmseg, which ignores the orientation.
    """
    image_loader, _ = sample_loaders(dataset)
    return getattr(image_loader, 'color_type', 'color') in ORIENTING_COLOR_TYPES


def _header(path: str) -> Optional[tuple[int, int, int]]:
    """``(width, height, EXIF orientation)`` read from the file header without decoding the
    pixels; ``None`` when Pillow cannot read it (decoding reports a corrupt file)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                exif = img.info.get('exif')  # JPEG APP1 or a PNG eXIf chunk before the pixels
    except Exception:  # noqa: BLE001  (any unreadable header: the size is unknown)
        return None
    orientation = 1
    if exif:
        try:
            parsed = Image.Exif()
            parsed.load(exif)
            orientation = int(parsed.get(EXIF_ORIENTATION, 1))
        except Exception:  # noqa: BLE001  (a malformed EXIF block: no orientation)
            pass
    return width, height, orientation


def size_problem(info: dict, key: str, orientation: bool = True) -> Optional[str]:
    """The label map of a sample has the size of its image (as the pipeline loads them).

    Args:
        info: The sample's data info (``img_path``, ``seg_map_path``).
        key: The dataset's config key, for the message.
        orientation: Whether the image is turned by its EXIF orientation when loaded
            (:func:`orientation_applied`; read from a JPEG's header or a PNG's eXIf chunk
            before its pixels).
    """
    img_path, seg_path = info.get('img_path'), info.get('seg_map_path')
    if not (img_path and seg_path and osp.isfile(img_path) and osp.isfile(seg_path)):
        return None  # no label map, or files the pipeline reports as missing
    image, label = _header(img_path), _header(seg_path)
    if image is None or label is None:
        return None
    stored, turned = image[:2], orientation and image[2] in TURNED
    loaded = stored[::-1] if turned else stored
    if label[:2] == loaded:
        return None
    return _size_message(key, seg_path, label[:2], img_path, loaded, stored if turned else None)


def _size_message(key: str, seg_path: str, label: tuple[int, int], img_path: str,
                  loaded: tuple[int, int], stored: Optional[tuple[int, int]]) -> str:
    """Sizes are ``(width, height)``; ``stored`` is given when the EXIF orientation turned
    the image."""
    size = '{}x{}'.format
    image = size(*loaded)
    if stored:
        image += f' as loaded (stored as {size(*stored)}, turned by its EXIF orientation)'
    message = (f'{key}: label map {seg_path!r} is {size(*label)} pixels but its image '
               f'{img_path!r} is {image} (width x height): a label map must have the size of '
               f'its image, pixel for pixel. Re-export the label map at {size(*loaded)} (if it '
               'is a scaled copy, resize it with nearest-neighbour interpolation, which keeps '
               'the class indices), or remove the pair from the dataset.')
    if stored and label == stored:
        message += (' If the labels were drawn on the stored pixels, load the images with '
                    "LoadImageFromFile(color_type='color_ignore_orientation') instead.")
    return message


def load_problem(info: dict, idx: int, key: str, err: Exception) -> str:
    """Which file of a sample the data pipeline could not load, and why."""
    files = [('image', info.get('img_path')), ('label map', info.get('seg_map_path'))]
    for kind, path in files:
        if not path:
            continue
        if not osp.isfile(path):
            return f'{key}: {kind} {path!r} does not exist (sample {idx})'
        if cv2.imread(path, cv2.IMREAD_UNCHANGED) is None:
            return (f'{key}: {kind} {path!r} cannot be decoded: the file is corrupt, truncated '
                    'or not an image. Replace it, or remove it and its '
                    f'{"label map" if kind == "image" else "image"} from the dataset.')
    named = ', '.join(f'{kind} {path!r}' for kind, path in files if path)
    return (f'{key}: loading sample {idx} ({named}) failed in the data pipeline: '
            f'{type(err).__name__}: {err}')


@dataclass(frozen=True)
class LabelSpace:
    """The values a loaded label map may hold: class indices and ``ignore_index``.

    Attributes:
        key: The dataset's config key, for the messages.
        num_classes: Classes of the dataset (its ``metainfo.classes``).
        ignore_index: The value that marks pixels without a label.
        file_classes: Classes the files are labelled with: more than ``num_classes`` when
            ``metainfo.classes`` picks a subset (mmseg's ``label_map`` ignores the others).
    """
    key: str
    num_classes: int
    ignore_index: int = 255
    file_classes: Optional[int] = None

    @classmethod
    def of(cls, dataset: Any, key: str) -> 'LabelSpace':
        """The label space of a dataset, or of the first segmentation dataset it wraps."""
        inner = next((inner for inner, _ in seg_datasets(dataset, key)), None)
        label_map = dataset.metainfo.get('label_map') or {}
        return cls(key, len(dataset.metainfo['classes']),
                   getattr(inner, 'ignore_index', 255), len(label_map) or None)

    def problem(self, labels: np.ndarray, path: str, reduce_zero_label: bool) -> Optional[str]:
        """What is wrong with a loaded label map ``[H, W]`` (after ``reduce_zero_label`` and
        ``label_map``), if anything."""
        if labels.ndim != 2:
            return (f'{self.key}: label map {path!r} has shape {tuple(labels.shape)}: expected '
                    'one channel of class indices (a grey-scale or palette PNG, not a colour '
                    'image)')
        bad = ((labels < 0) | (labels >= self.num_classes)) & (labels != self.ignore_index)
        if not bad.any():
            return None
        values = np.unique(labels[bad]).tolist()
        file_classes = self.file_classes or self.num_classes
        subset = ' (those not in metainfo.classes are ignored)' if self.file_classes else ''
        if reduce_zero_label:  # the file holds value + 1; 0 became ignore_index
            values = [value + 1 for value in values]
            allowed = f'0 (ignored), 1..{file_classes} for the classes{subset}'
        else:
            allowed = f'0..{file_classes - 1} for the classes{subset}'
        return (f'{self.key}: label map {path!r} holds the values {values}, which are not '
                f'classes: the dataset has {file_classes} classes, so a label map may hold '
                f'{allowed} and {self.ignore_index} (ignored)'
                f'{" with reduce_zero_label=True" if reduce_zero_label else ""}. Fix the label '
                'map, or give the dataset its full class list (metainfo.classes).')
