"""The pictures of ``denseclip.apis.visualization`` without a model: the choice of score maps,
the legend, the layout of the demo's panels and of the quickstart's grid, labels over an image
(the demo's whole picture: tests/test_tools/test_demo.py)."""
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from denseclip.apis.visualization import (PAD, TITLE_HEIGHT, HeatMaps, draw_labels,
                                          draw_prediction, legend_entries, render_grid,
                                          render_picture, select_maps)


def test_select_maps():
    names = ('wall', 'bed ', 'sky')
    assert select_maps(names, None, [2, 0]) == []
    assert select_maps(names, [], [2, 0]) == [2, 0]
    assert select_maps(names, ['bed', 'wall'], [2]) == [1, 0]
    with pytest.raises(ValueError, match='grass'):
        select_maps(names, ['grass'], [])


def test_legend_lists_predicted_classes_by_area():
    prediction = torch.tensor([[0, 2, 2, 2], [2, 0, 255, 1]])
    palette = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    entries = legend_entries(prediction, ['wall', 'bed ', 'sky'], palette)
    assert [label for label, _ in entries] == ['sky 50%', 'wall 25%', 'bed 12%']
    assert entries[0][1] == (0, 0, 1)


def test_panels_wrap_into_rows():
    image = np.zeros((50, 400, 3), np.uint8)
    heat = HeatMaps(np.random.default_rng(0).random((4, 50, 400)), ['a', 'b', 'c', 'd'])
    picture, boxes = render_picture(image, image, [('a 100%', (1, 0, 0))], heat)
    assert len(boxes) == 6
    assert all((box.width, box.height) == (400, 50) for box in boxes)
    assert len({box.top for box in boxes}) == 2  # 3 + 3 panels of 420 px in 1600 px rows
    assert picture.shape[1] == 3 * 420


def test_labels_are_drawn_as_a_prediction_overlay():
    image = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    labels = np.zeros((6, 8), np.int64)
    labels[:, 4:] = 1
    labels[0] = 255  # the ignore index: no colour
    classes, palette = ['wall', 'sky'], [[255, 0, 0], [0, 0, 255]]
    drawn = draw_labels(image, labels, classes, palette, opacity=0.7)
    sample = SegDataSample(pred_sem_seg=PixelData(data=torch.as_tensor(labels)[None]))
    np.testing.assert_array_equal(drawn, draw_prediction(image, sample, classes, palette, 0.7))
    colours = np.array(palette)[labels.clip(0, 1)] * (labels < 255)[..., None]
    np.testing.assert_allclose(drawn, 0.3 * image + 0.7 * colours, atol=1)


def test_grid_places_rows_of_panels_under_titles_and_the_legend_below():
    rows = [[np.full((10, 12, 3), 40 * (3 * row + column), np.uint8) for column in range(3)]
            for row in range(2)]
    legend = [('wall', (1, 0, 0)), ('other (not scored)', (0, 0, 0))]
    picture = render_grid(rows, ('input', 'ground truth', 'prediction'), legend, scale=2)
    height, width = 20, 24
    assert picture.shape[1] == 3 * (width + 2 * PAD)
    for row in range(2):
        for column in range(3):
            top, left = TITLE_HEIGHT + row * (height + PAD), PAD + column * (width + 2 * PAD)
            panel = picture[top:top + height, left:left + width]
            assert (panel == 40 * (3 * row + column)).all(), (row, column)
    assert (picture[:TITLE_HEIGHT] < 128).any()  # the titles
    below = picture[TITLE_HEIGHT + 2 * (height + PAD):]
    assert (below == (255, 0, 0)).all(-1).any()  # the legend's swatch of 'wall'
