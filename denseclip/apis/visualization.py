"""Pictures of predictions: the decoder's classes over the image, and pixel-text heat-maps.

The demo's picture (:func:`demo_picture`, ``tools/demo.py``) is a grid of panels, each showing
the image at its own size (times ``scale``): the input, the prediction overlay drawn by mmseg's
``SegLocalVisualizer`` with the dataset palette and a legend of the predicted classes, then one
heat-map per requested name with the name as title and a colour bar. Panels are placed
pixel-exactly (no resampling at ``scale`` 1); ``render_picture`` returns where each one lies in
the picture. :func:`render_grid` lays out rows of such panels under column titles (the
quickstart's input | ground truth | prediction).
"""
import math
import os
from collections.abc import Sequence
from typing import NamedTuple, Optional

import cv2
import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from mmseg.visualization import SegLocalVisualizer

from denseclip.clip.preprocess import read_image
from denseclip.datasets import default_palette

from .score_maps import predict_with_score_maps

#: Layout in pixels (text sizes in points at ``DPI``).
DPI = 100
PAD = 10
TITLE_HEIGHT = 22
COLOUR_BAR_HEIGHT = 10
COLOUR_BAR_TEXT = 30  # tick labels and the bar's label under it
LEGEND_ROW = 16
LEGEND_COLUMN = 120
MAX_LEGEND_ENTRIES = 12
FONT_SIZE = 8
COLOUR_MAP = 'inferno'


class Box(NamedTuple):
    """Where a panel lies in the picture, in pixels: ``picture[top:top + height, left:...]``."""
    left: int
    top: int
    width: int
    height: int


class HeatMaps(NamedTuple):
    """Score maps to draw: ``maps`` ``[N, H, W]`` with a title each, on one colour scale."""
    maps: np.ndarray
    titles: Sequence[str]
    value_label: str = 'pixel-text cosine similarity'
    value_range: Optional[tuple[float, float]] = None  # None: min and max over all maps


def draw_prediction(image_rgb: np.ndarray, data_sample: SegDataSample, classes: Sequence[str],
                    palette: Sequence[Sequence[int]], opacity: float = 0.5) -> np.ndarray:
    """The predicted classes in the palette's colours over the image (RGB ``[H, W, 3]``)."""
    visualizer = SegLocalVisualizer(name='denseclip_prediction', alpha=opacity)
    visualizer.dataset_meta = dict(classes=list(classes), palette=[list(c) for c in palette])
    visualizer.add_datasample('prediction', image_rgb, data_sample, draw_gt=False,
                              draw_pred=True, with_labels=False)
    return visualizer.get_image()


def draw_labels(image_rgb: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                palette: Sequence[Sequence[int]], opacity: float = 0.5) -> np.ndarray:
    """Class labels ``[H, W]`` (ground truth or prediction) over the image, as
    :func:`draw_prediction` draws them; values that are no class (the ignore index) get no
    colour, so the image there is only darkened by ``opacity``."""
    sample = SegDataSample(pred_sem_seg=PixelData(data=torch.as_tensor(labels)[None]))
    return draw_prediction(image_rgb, sample, classes, palette, opacity)


def legend_entries(prediction: torch.Tensor, classes: Sequence[str],
                   palette: Sequence[Sequence[int]]) -> list[tuple[str, tuple[float, ...]]]:
    """``(label, RGB in [0, 1])`` for the predicted classes, largest area first."""
    labels, counts = torch.unique(prediction, return_counts=True)
    order = torch.argsort(counts, descending=True, stable=True)
    total = int(counts.sum())
    entries = []
    for label, count in zip(labels[order].tolist(), counts[order].tolist()):
        if label >= len(classes):  # ignore index
            continue
        colour = tuple(channel / 255 for channel in palette[label])
        share = 100 * count / total
        share = f'{share:.0f}%' if share >= 0.5 else '<1%'
        entries.append((f'{classes[label].strip()} {share}', colour))
    if len(entries) > MAX_LEGEND_ENTRIES:
        rest = len(entries) - MAX_LEGEND_ENTRIES + 1
        entries = entries[:MAX_LEGEND_ENTRIES - 1] + [(f'+ {rest} more classes', (1, 1, 1))]
    return entries


def blend_heat_map(image_rgb: np.ndarray, score_map: np.ndarray, norm: Normalize,
                   cmap_name: str = COLOUR_MAP, alpha: float = 0.7) -> np.ndarray:
    """A score map in colour over the image in grey (RGB ``uint8``)."""
    grey = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)[..., None] / 255
    colours = colormaps[cmap_name](norm(score_map))[..., :3]
    return np.clip(255 * (alpha * colours + (1 - alpha) * grey), 0, 255).astype(np.uint8)


def _scaled(image: np.ndarray, scale: int) -> np.ndarray:
    return image if scale == 1 else cv2.resize(image, None, fx=scale, fy=scale,
                                               interpolation=cv2.INTER_NEAREST)


def _draw_legend(figure: Figure, box: tuple, entries, size: tuple[int, int]) -> None:
    """Colour swatches and names in columns of ``LEGEND_COLUMN`` pixels."""
    width, height = size
    axes = figure.add_axes(box)
    axes.set_xlim(0, width)
    axes.set_ylim(height, 0)  # pixels, origin at the top left
    axes.set_axis_off()
    columns = max(1, width // LEGEND_COLUMN)
    rows = math.ceil(len(entries) / columns)
    column_width = width / columns
    max_chars = int((column_width - 18) / 6)
    for index, (label, colour) in enumerate(entries):
        column, row = divmod(index, rows)
        left, top = column * column_width, row * LEGEND_ROW + 2
        axes.add_patch(Rectangle((left, top), 12, 11, facecolor=colour, edgecolor='black',
                                 linewidth=0.5))
        text = label if len(label) <= max_chars else label[:max_chars - 1] + '…'
        axes.text(left + 16, top + 6, text, fontsize=FONT_SIZE, va='center')


class _Sheet:
    """A white matplotlib figure of ``width`` x ``height`` pixels, addressed in pixels from the
    top left."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        # + 0.25 px: matplotlib truncates the canvas size, which a rounding error would shrink
        self.figure = Figure(figsize=((width + 0.25) / DPI, (height + 0.25) / DPI), dpi=DPI,
                             facecolor='white')

    def box(self, left: float, top: float, width: float, height: float) -> tuple:
        """The figure fractions ``(left, bottom, width, height)`` of a box in pixels."""
        return (left / self.width, 1 - (top + height) / self.height, width / self.width,
                height / self.height)

    def panel(self, pixels: np.ndarray, box: Box, title: Optional[str]) -> None:
        """``pixels`` exactly in ``box`` (no resampling), ``title`` centred above it."""
        axes = self.figure.add_axes(self.box(*box))
        axes.imshow(pixels, interpolation='nearest', aspect='auto')
        axes.set_axis_off()
        if title is not None:
            self.figure.text((box.left + box.width / 2) / self.width,
                             1 - (box.top - 5) / self.height, title, ha='center', va='bottom',
                             fontsize=FONT_SIZE + 2, fontweight='bold')

    def picture(self) -> np.ndarray:
        """The drawn figure, RGB ``[height, width, 3]``."""
        canvas = FigureCanvasAgg(self.figure)
        canvas.draw()
        picture = np.asarray(canvas.buffer_rgba())[..., :3].copy()
        assert picture.shape[:2] == (self.height, self.width), picture.shape
        return picture


def render_picture(image_rgb: np.ndarray, overlay: np.ndarray, legend, heat_maps: HeatMaps,
                   scale: int = 1, max_width: int = 1600,
                   overlay_title: str = 'prediction') -> tuple[np.ndarray, list[Box]]:
    """Lays out input, overlay and heat-maps; returns the RGB picture and the panel boxes.

    Each panel is the image's size times ``scale`` (nearest-neighbour enlargement); titles,
    the legend and the colour bars lie outside the panels. Panels fill rows of at most
    ``max_width`` pixels (at least one panel a row), balanced: 6 panels make rows of 3 + 3.
    """
    height, width = image_rgb.shape[0] * scale, image_rgb.shape[1] * scale
    maps = np.asarray(heat_maps.maps, dtype=np.float32)
    low, high = heat_maps.value_range or ((float(maps.min()), float(maps.max()))
                                          if len(maps) else (0.0, 1.0))
    norm = Normalize(vmin=low, vmax=high if high > low else low + 1e-6)
    legend_height = LEGEND_ROW * math.ceil(len(legend) / max(1, width // LEGEND_COLUMN)) + 4
    bar_height = COLOUR_BAR_HEIGHT + COLOUR_BAR_TEXT
    # (title, pixels, height of what goes under the panel)
    panels = [('input', _scaled(image_rgb, scale), 0),
              (overlay_title, _scaled(overlay, scale), legend_height)] + [
        (title, _scaled(blend_heat_map(image_rgb, score_map, norm), scale), bar_height)
        for title, score_map in zip(heat_maps.titles, maps)]

    cell_width = width + 2 * PAD
    columns = max(1, min(len(panels), max_width // cell_width))
    columns = math.ceil(len(panels) / math.ceil(len(panels) / columns))  # balance the rows
    rows = [panels[start:start + columns] for start in range(0, len(panels), columns)]
    row_heights = [TITLE_HEIGHT + height + 4 + max(under for *_, under in row) + PAD
                   for row in rows]
    sheet = _Sheet(columns * cell_width, sum(row_heights))
    boxes = []
    for index, (title, panel, _) in enumerate(panels):
        row, column = divmod(index, columns)
        box = Box(column * cell_width + PAD, sum(row_heights[:row]) + TITLE_HEIGHT, width,
                  height)
        boxes.append(box)
        sheet.panel(panel, box, title)
        under = box.top + height + 4
        if index == 1:
            _draw_legend(sheet.figure, sheet.box(box.left, under, width, legend_height), legend,
                         (width, legend_height))
        elif index > 1:
            _draw_colour_bar(sheet.figure, sheet.box(box.left, under, width, COLOUR_BAR_HEIGHT),
                             norm, heat_maps.value_label, width)
    return sheet.picture(), boxes


def render_grid(rows: Sequence[Sequence[np.ndarray]], titles: Sequence[str], legend,
                scale: int = 1) -> np.ndarray:
    """Rows of panels under column titles, with a legend under the grid (RGB picture).

    Args:
        rows: One list of RGB panels a row, one panel a title; every panel has the size of
            the first.
        titles: The columns' titles, drawn above the first row.
        legend: ``(label, RGB in [0, 1])`` entries, drawn as the demo picture's legend.
        scale: Integer enlargement of every panel (nearest neighbour).
    """
    height, width = (side * scale for side in rows[0][0].shape[:2])
    cell_width, row_height = width + 2 * PAD, height + PAD
    legend_width = len(titles) * cell_width - 2 * PAD
    legend_height = LEGEND_ROW * math.ceil(len(legend) / max(1, legend_width // LEGEND_COLUMN)) + 4
    legend_top = TITLE_HEIGHT + len(rows) * row_height
    sheet = _Sheet(len(titles) * cell_width, legend_top + legend_height + PAD)
    for row, panels in enumerate(rows):
        for column, panel in enumerate(panels):
            box = Box(column * cell_width + PAD, TITLE_HEIGHT + row * row_height, width, height)
            sheet.panel(_scaled(panel, scale), box, titles[column] if row == 0 else None)
    _draw_legend(sheet.figure, sheet.box(PAD, legend_top, legend_width, legend_height), legend,
                 (legend_width, legend_height))
    return sheet.picture()


def _draw_colour_bar(figure: Figure, box: tuple, norm: Normalize, label: str,
                     width: int) -> None:
    axes = figure.add_axes(box)
    colour_bar = figure.colorbar(ScalarMappable(norm=norm, cmap=COLOUR_MAP), cax=axes,
                                 orientation='horizontal')
    colour_bar.locator = MaxNLocator(nbins=max(2, width // 50))
    colour_bar.update_ticks()
    colour_bar.ax.tick_params(labelsize=FONT_SIZE - 1, length=2, pad=1)
    colour_bar.set_label(label, fontsize=FONT_SIZE - 1, labelpad=1)


def save_picture(picture_rgb: np.ndarray, path: str | os.PathLike) -> None:
    """Writes an RGB picture as PNG (or any format OpenCV knows from the extension)."""
    path = os.fspath(path)
    options = [cv2.IMWRITE_PNG_COMPRESSION, 9] if path.lower().endswith('.png') else []
    if not cv2.imwrite(path, cv2.cvtColor(picture_rgb, cv2.COLOR_RGB2BGR), options):
        raise OSError(f'could not write {path!r} (does its folder exist?)')


def _classes_and_palette(model, classes: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """The predicted class names and the palette of the checkpoint's dataset (if it fits);
    names other than the model's (a zero-shot query) get colours of their own."""
    classes = list(classes)
    palette = (getattr(model, 'dataset_meta', None) or {}).get('palette')
    if tuple(classes) != tuple(model.class_names) or not palette or len(palette) < len(classes):
        palette = default_palette(len(classes))
    return classes, [list(colour) for colour in palette[:len(classes)]]


def select_maps(names: Sequence[str], requested: Optional[Sequence[str]],
                default: Sequence[int]) -> list[int]:
    """Indices into ``names`` of the maps to draw.

    Args:
        names: The names that score maps were computed for.
        requested: ``None``: none; empty: ``default``; else names from ``names`` (compared
            without surrounding blanks).
        default: Indices to draw when ``requested`` is empty.
    """
    if requested is None:
        return []
    if not requested:
        return [index for index in default if index < len(names)]
    stripped = [name.strip() for name in names]
    unknown = [name for name in requested if name.strip() not in stripped]
    if unknown:
        raise ValueError(f'no score map for {unknown}: the names are {stripped}; ask for other '
                         'names as open-vocabulary class names (--classes)')
    return [stripped.index(name.strip()) for name in requested]


def demo_picture(model, image, score_classes: Optional[Sequence[str]] = None,
                 class_names: Optional[Sequence[str]] = None, opacity: float = 0.5,
                 scale: int = 1, softmax: bool = False):
    """The demo's picture: prediction overlay plus heat-maps of the requested score maps.

    Args:
        model: A DenseCLIP segmentor from ``denseclip.apis.init_model``.
        image: An image path or a BGR array.
        score_classes: Names whose score maps to draw; ``None`` draws none unless
            ``class_names`` is given (then all of them); an empty list draws the predicted
            classes.
        class_names: Open-vocabulary names for the text branch; DenseCLIP's decoder keeps
            predicting its trained classes, a zero-shot segmentor predicts these names.
        opacity: Of the class colours over the image.
        scale: Integer enlargement of every panel.
        softmax: Draw ``softmax(s / tau)`` over the names instead of cosine similarities.

    Returns:
        ``(picture RGB, panel boxes, ScoreMapResult)``.
    """
    result = predict_with_score_maps(model, image, class_names)
    image_rgb = (np.ascontiguousarray(image[..., ::-1]) if isinstance(image, np.ndarray)
                 else read_image(image, 'rgb'))
    classes, palette = _classes_and_palette(model, result.predicted_classes)
    prediction = result.data_sample.pred_sem_seg.data[0].cpu()
    overlay = draw_prediction(image_rgb, result.data_sample, classes, palette, opacity)
    legend = legend_entries(prediction, classes, palette)
    if class_names is None:  # by default the classes the decoder predicted, largest first
        labels, counts = torch.unique(prediction, return_counts=True)
        default = labels[torch.argsort(counts, descending=True, stable=True)].tolist()
    else:  # by default every queried name
        score_classes = [] if score_classes is None else score_classes
        default = list(range(len(result.class_names)))
    indices = select_maps(result.class_names, score_classes, default)
    maps = result.score_maps.cpu()
    titles = [result.class_names[index].strip() for index in indices]
    if class_names is not None:
        titles = [f"'{title}' (query)" for title in titles]
    if softmax:
        maps = torch.softmax(maps / model.tau, dim=0)
        heat = HeatMaps(maps[indices].numpy(), titles,
                        f'softmax(s/τ) over the {len(result.class_names)} names', (0.0, 1.0))
    else:
        heat = HeatMaps(maps[indices].numpy(), titles)
    picture, boxes = render_picture(image_rgb, overlay, legend, heat, scale)
    return picture, boxes, result
