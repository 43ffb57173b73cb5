"""How the synthetic images look: the fixed appearance of each class and the
drawing of scenes (:func:`render_scene`) and single objects
(:func:`render_object`), for :mod:`denseclip.datasets.synthetic`.

The background (class 0) is a noisy, low-saturation cloudy texture of any
hue. Class ``k`` (1..K) has a distinctive colour *and* texture (stripes,
checker, dots, gradient or cloudy noise), jittered per instance; shapes are
rectangles, ellipses, star-shaped polygons and smooth blobs; pixel noise
covers the whole image. Everything drawn depends only on the state of the
``numpy`` generator passed in, so fixed seeds give byte-identical images.
"""
import colorsys

import cv2
import numpy as np

TEXTURES = ('stripes', 'checker', 'dots', 'gradient', 'clouds')
GOLDEN_RATIO = 0.618033988749895  # spreads hues of consecutive classes
# least share of an ImageFolder image that its one shape covers
MIN_OBJECT_FRACTION = 0.2


def class_appearance(k: int) -> dict:
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
