"""One palette for classes that name no colours, shared by every tool."""
import itertools
from pathlib import Path

import numpy as np
from mmengine.config import Config

from denseclip.datasets import default_palette, fill_palette
from denseclip.engine.config import LOADERS, prepare_config

QUICKSTART = (Path(__file__).resolve().parents[2] /
              'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py')


def test_the_default_palette_is_fixed_and_its_colours_far_apart():
    palette = np.array(default_palette(20), dtype=float)
    assert default_palette(20) == default_palette(20)
    assert default_palette(5) == default_palette(20)[:5]  # a class keeps its colour
    assert ((palette >= 0) & (palette <= 255)).all()
    closest = min(np.linalg.norm(a - b) for a, b in itertools.combinations(palette, 2))
    assert closest > 50  # mmseg's random colours (seed 42) come within 20 for 20 classes


def test_custom_classes_get_it_and_known_classes_keep_their_colours():
    custom = dict(type='BaseSegDataset', metainfo=dict(classes=('sky', 'grass', 'road')))
    assert fill_palette(custom) and custom['metainfo']['palette'] == default_palette(3)
    ade = dict(type='ADE20KDataset', metainfo=dict(classes=('wall', 'sky')))
    assert not fill_palette(ade) and 'palette' not in ade['metainfo']  # mmseg's own colours
    given = dict(type='BaseSegDataset', metainfo=dict(classes=('a',), palette=[[1, 2, 3]]))
    assert not fill_palette(given)


def test_every_tool_gets_it_through_prepare_config():
    cfg = Config.fromfile(QUICKSTART)
    for key in LOADERS:  # a custom dataset: classes, no colours
        cfg[key].dataset.type = 'BaseSegDataset'
        cfg[key].dataset.metainfo = dict(classes=[f'c{index}' for index in range(8)])
    prepare_config(cfg, device='cpu')
    for key in LOADERS:
        assert cfg[key].dataset.metainfo.palette == default_palette(8)
