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
import colorsys
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
from mmseg.datasets import ADE20KDataset

DATASET_DIR = 'ADEChallengeData2016'
IMAGE_FOLDER_DIR = 'imagefolder'
CAPTION_DIR = 'captions'
MARKER = 'synthetic.json'
PARTIAL_MARKER = 'synthetic.incomplete.json'
FORMAT_VERSION = 2  # 2: captions and the ImageFolder split; images unchanged
# (split folder, file-name stem, parameter holding its size); the position
# in this tuple is the split's entry in the per-image seed.
SPLITS = (('training', 'ADE_train', 'num_train'),
          ('validation', 'ADE_val', 'num_val'))
MAX_CLASSES = len(ADE20KDataset.METAINFO['classes'])  # 150
TEXTURES = ('stripes', 'checker', 'dots', 'gradient', 'clouds')
GOLDEN_RATIO = 0.618033988749895  # spreads hues of consecutive classes
JPEG_QUALITY = 95
# Caption phrasings, one drawn per image; '{}' receives the class names,
# each with its article: 'a photo of {}.' -> 'a photo of a tree and a road.'
CAPTION_TEMPLATES = ('a photo of {}.', 'a picture of {}.',
                     'an image of {}.', 'a rendering of {}.')
# least share of an ImageFolder image that its one shape covers
MIN_OBJECT_FRACTION = 0.2


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
    return _generate(data_dir, params, expected, owned, overwrite,
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
    return _generate(data_dir, params, expected, owned, overwrite,
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
    appearances = [_class_appearance(k) for k in range(num_classes + 1)]
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
    appearances = [_class_appearance(k) for k in range(num_classes + 1)]
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


# --------------------------------------------------------------------------
# Bookkeeping: parameters, marker files, idempotency.
# --------------------------------------------------------------------------


def _generate(data_dir: Path, params: dict, expected: dict[Path, int | None],
              owned: tuple[str, ...], overwrite: bool,
              write: Callable[[Path, dict], None]) -> Path:
    """Run ``write(data_dir, params)`` between the two markers, unless
    ``data_dir`` already holds exactly this data (see :func:`_is_complete`).
    ``owned`` names the entries of ``data_dir`` that ``overwrite`` removes."""
    if _is_complete(data_dir, params, expected):
        return data_dir
    _prepare_folder(data_dir, params, overwrite, owned)
    data_dir.mkdir(parents=True, exist_ok=True)
    _write_marker(data_dir / PARTIAL_MARKER, params)
    write(data_dir, params)
    _write_marker(data_dir / MARKER, params)
    (data_dir / PARTIAL_MARKER).unlink()
    return data_dir


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


def _write_marker(path: Path, params: dict) -> None:
    path.write_text(json.dumps(params, indent=2, sort_keys=True) + '\n')


def _read_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _is_complete(data_dir: Path, params: dict,
                 expected: dict[Path, int | None]) -> bool:
    """Whether ``data_dir`` holds a finished dataset with ``params``:
    ``expected`` maps each folder to its number of entries, and each file
    that must exist to ``None``."""
    if _read_marker(data_dir / MARKER) != params:
        return False
    if (data_dir / PARTIAL_MARKER).exists():
        return False
    for path, count in expected.items():
        if count is None:
            if not path.is_file():
                return False
        elif not path.is_dir() or len(list(path.iterdir())) != count:
            return False
    return True


def _prepare_folder(data_dir: Path, params: dict, overwrite: bool,
                    owned: tuple[str, ...]) -> None:
    """Make ``data_dir`` ready for writing, or raise if it holds data."""
    if not data_dir.exists() or not any(data_dir.iterdir()):
        return
    ours = [data_dir / m for m in (MARKER, PARTIAL_MARKER)
            if (data_dir / m).exists()]
    if not ours:
        raise FileExistsError(
            f'{data_dir} exists, is not empty and has no {MARKER} marker; '
            'refusing to touch data that was not written by this '
            'synthetic-data generator. Choose another root.')
    if not overwrite:
        found = _read_marker(ours[0])
        if (data_dir / PARTIAL_MARKER).exists() or found == params:
            state = 'is incomplete (interrupted, or files were removed)'
        elif (found or {}).get('version') != params['version']:
            state = (f'has format version {(found or {}).get("version")}, '
                     f'this code writes version {params["version"]}')
        else:
            state = 'was written with other parameters'
        raise FileExistsError(
            f'The synthetic dataset in {data_dir} {state}: {ours[0].name} '
            f'says {_describe(found)}, requested {_describe(params)}. '
            'Pass overwrite=True (--overwrite) to regenerate it.')
    for entry in owned:
        path = data_dir / entry
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for marker in ours:
        marker.unlink()


def _describe(params: dict | None) -> str:
    return json.dumps(params, sort_keys=True)


def _imwrite(path: Path, array: np.ndarray, flags: list[int]) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(array), flags):
        raise OSError(f'cv2 could not write {path}')


# --------------------------------------------------------------------------
# Rendering: class appearances, shapes, scenes.
# --------------------------------------------------------------------------


def _class_appearance(k: int) -> dict:
    """Fixed appearance of class ``k`` (0 = background), seed-independent.

    Returns:
        Dict with ``hue``/``sat``/``val`` of the base colour, the texture
        name, its ``period`` in pixels, its ``angle`` in radians and its
        ``contrast`` (value difference between the two texture colours).
    """
    if k == 0:
        return dict(hue=0.0, sat=0.08, val=0.5, texture='clouds', period=24,
                    angle=0.0, contrast=0.25, random_tint=True)
    j = k - 1
    return dict(
        hue=(j * GOLDEN_RATIO) % 1.0,
        sat=0.85 - 0.3 * ((j // 3) % 2),
        val=0.8 - 0.2 * ((j // 5) % 2),
        # shifted every 5 classes: the golden-ratio hues of j and j + 5 are
        # close, so those two classes get different textures
        texture=TEXTURES[(j + j // 5) % len(TEXTURES)],
        period=(6, 10, 14)[(j // len(TEXTURES)) % 3],
        angle=np.pi * ((j * 3) % 8) / 8,
        contrast=0.35,
        random_tint=False)


def _texture(rng: np.random.Generator, name: str, period: float,
             angle: float, shape: tuple[int, int]) -> np.ndarray:
    """Return a pattern in [0, 1] of the given ``shape`` ``[H, W]``."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy + rng.uniform(0, period), xx + rng.uniform(0, period)
    along = xx * np.cos(angle) + yy * np.sin(angle)
    if name == 'stripes':
        return 0.5 + 0.5 * np.sin(2 * np.pi * along / period)
    if name == 'checker':
        half = period / 2
        return ((np.floor(xx / half) + np.floor(yy / half)) % 2)
    if name == 'dots':
        dy = (yy % period) - period / 2
        dx = (xx % period) - period / 2
        return (dx**2 + dy**2 < (period / 3)**2).astype(np.float32)
    if name == 'gradient':
        span = max(h, w) * rng.uniform(0.5, 1.0)
        return np.clip((along - along.min()) / span, 0, 1)
    if name == 'clouds':
        grid = rng.random((max(2, h // int(period)), max(2, w // int(period))))
        return cv2.resize(grid.astype(np.float32), (w, h),
                          interpolation=cv2.INTER_CUBIC).clip(0, 1)
    raise ValueError(f'unknown texture {name!r}')


def _hsv_to_rgb(hue: float, sat: float, val: float) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, np.clip(sat, 0, 1),
                                  np.clip(val, 0, 1))
    return np.array([r, g, b], dtype=np.float32)


def _paint(rng: np.random.Generator, look: dict,
           shape: tuple[int, int]) -> np.ndarray:
    """Render one jittered instance of an appearance, ``[H, W, 3]`` in 0..1."""
    hue = look['hue'] + rng.normal(0, 0.02)
    sat = look['sat'] * rng.uniform(0.85, 1.1)
    val = look['val'] * rng.uniform(0.85, 1.1)
    if look['random_tint']:  # background: any hue, mid brightness
        hue, val = rng.random(), rng.uniform(0.35, 0.65)
    period = look['period'] * rng.uniform(0.9, 1.1)
    angle = look['angle'] + rng.normal(0, 0.08)
    pattern = _texture(rng, look['texture'], period, angle, shape)
    dark = _hsv_to_rgb(hue, sat, val - look['contrast'])
    light = _hsv_to_rgb(hue, sat * 0.9, val + look['contrast'] / 2)
    return dark + pattern[..., None] * (light - dark)


def _random_polygon(rng: np.random.Generator, center: np.ndarray,
                    radius: np.ndarray, blob: bool) -> np.ndarray:
    """Vertices ``[N, 2]`` (x, y) of a star-shaped polygon or smooth blob."""
    n = 48 if blob else int(rng.integers(3, 8))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n)) if not blob \
        else np.linspace(0, 2 * np.pi, n, endpoint=False)
    if blob:  # radius modulated by a few low harmonics
        scale = np.ones(n)
        for harmonic in (2, 3, 4):
            scale += rng.uniform(0, 0.25) * np.cos(
                harmonic * angles + rng.uniform(0, 2 * np.pi))
    else:
        scale = rng.uniform(0.6, 1.0, n)
    pts = center + np.stack([np.cos(angles), np.sin(angles)], 1) \
        * radius * scale[:, None]
    return np.round(pts).astype(np.int32)


def _shape_mask(rng: np.random.Generator, shape: tuple[int, int],
                center_range: tuple[float, float] = (0.15, 0.85),
                radius_range: tuple[float, float] = (0.12, 0.35)
                ) -> np.ndarray:
    """A random rectangle/ellipse/polygon/blob mask ``[H, W]`` (bool).

    The centre and the half-extents are drawn from the given ranges, as
    fractions of the image's width and height.
    """
    h, w = shape
    mask = np.zeros(shape, np.uint8)
    (c0, c1), (r0, r1) = center_range, radius_range
    center = rng.uniform([c0 * w, c0 * h], [c1 * w, c1 * h])
    radius = rng.uniform([r0 * w, r0 * h], [r1 * w, r1 * h])
    kind = rng.integers(4)
    if kind == 0:
        top_left = np.round(center - radius).astype(int)
        bottom_right = np.round(center + radius).astype(int)
        cv2.rectangle(mask, tuple(map(int, top_left)),
                      tuple(map(int, bottom_right)), 1, thickness=-1)
    elif kind == 1:
        cv2.ellipse(mask, tuple(map(int, np.round(center))),
                    tuple(map(int, np.round(radius))),
                    float(rng.uniform(0, 180)), 0, 360, 1, thickness=-1)
    else:
        pts = _random_polygon(rng, center, radius, blob=kind == 3)
        cv2.fillPoly(mask, [pts], 1)
    return mask.astype(bool)


def render_scene(rng: np.random.Generator, image_size: tuple[int, int],
                 appearances: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Draw one image and its label map.

    Args:
        rng: Source of randomness; the scene depends only on its state.
        image_size: ``(height, width)``.
        appearances: ``appearances[k]`` describes class k; entry 0 is the
            background.

    Returns:
        ``(image, label)``: RGB ``uint8 [H, W, 3]`` and ``uint8 [H, W]``
        with values in ``0..len(appearances) - 1``.
    """
    shape = (int(image_size[0]), int(image_size[1]))
    canvas = _paint(rng, appearances[0], shape)
    label = np.zeros(shape, np.uint8)
    for _ in range(int(rng.integers(3, 7))):
        k = int(rng.integers(1, len(appearances)))
        mask = _shape_mask(rng, shape)
        canvas[mask] = _paint(rng, appearances[k], shape)[mask]
        label[mask] = k
    return _add_noise(rng, canvas), label


def render_object(rng: np.random.Generator, image_size: tuple[int, int],
                  appearances: list[dict],
                  k: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one image of the ImageFolder split: a single large shape of
    class ``k`` near the centre, over the background of the scenes.

    Args:
        rng: Source of randomness; the image depends only on its state.
        image_size: ``(height, width)``.
        appearances: As for :func:`render_scene`.
        k: The class to draw, ``1..len(appearances) - 1``.

    Returns:
        ``(image, label)`` as :func:`render_scene`; the label is ``k`` on
        the shape (at least ``MIN_OBJECT_FRACTION`` of the pixels), else 0.
    """
    if not 1 <= k < len(appearances):
        raise ValueError(f'k must be a class in [1, {len(appearances) - 1}],'
                         f' got {k!r}')
    shape = (int(image_size[0]), int(image_size[1]))
    canvas = _paint(rng, appearances[0], shape)
    mask = np.zeros(shape, bool)
    while mask.mean() < MIN_OBJECT_FRACTION:  # thin polygons are redrawn
        mask = _shape_mask(rng, shape, center_range=(0.35, 0.65),
                           radius_range=(0.3, 0.45))
    canvas[mask] = _paint(rng, appearances[k], shape)[mask]
    return _add_noise(rng, canvas), mask.astype(np.uint8) * k


def _add_noise(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    """Pixel noise over a ``[H, W, 3]`` canvas in 0..1, as ``uint8``."""
    canvas = canvas + rng.normal(0, 0.04, canvas.shape).astype(np.float32)
    return np.round(canvas.clip(0, 1) * 255).astype(np.uint8)
