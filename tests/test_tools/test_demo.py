"""tools/demo.py and the picture it draws: input, prediction overlay, one heat-map per name.

The model is the quickstart config's, randomly initialised and saved by the test; the image is
a non-square 80 x 96 picture, so every panel must come out 80 x 96 (times --scale).
"""
import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from denseclip.apis import demo_picture, inference_model, init_model
from denseclip.apis.visualization import PAD, TITLE_HEIGHT, draw_prediction

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
HEIGHT, WIDTH = 80, 96


pytestmark = pytest.mark.usefixtures('single_thread')  # tests/conftest.py



@pytest.fixture(scope='module')
def image_path(tmp_path_factory) -> Path:
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[10:50, 20:70] = (200, 60, 30)
    path = tmp_path_factory.mktemp('img') / 'image.png'
    cv2.imwrite(str(path), image)
    return path


def run_demo(*args: str) -> None:
    """Runs tools/demo.py in this process (as ``python tools/demo.py ...`` would)."""
    argv = sys.argv
    sys.argv = ['tools/demo.py', *args]
    try:
        runpy.run_path(str(ROOT / 'tools/demo.py'), run_name='__main__')
    finally:
        sys.argv = argv


def panel(picture: np.ndarray, index: int, scale: int = 1) -> np.ndarray:
    """Panel ``index`` of a one-row picture, where the layout says it is."""
    height, width = HEIGHT * scale, WIDTH * scale
    left = PAD + index * (width + 2 * PAD)
    return picture[TITLE_HEIGHT:TITLE_HEIGHT + height, left:left + width]


def test_demo_writes_overlay_and_one_heat_map_per_class(quickstart_checkpoint, image_path,
                                                        quickstart_model, tmp_path, capsys):
    out = tmp_path / 'out' / 'demo.png'
    run_demo(str(image_path), str(CONFIG), str(quickstart_checkpoint), '--out', str(out),
             '--score-maps', 'wall', 'sky', 'bed')
    assert 'input + prediction + 3 score map(s), each panel 96x80' in capsys.readouterr().out
    picture = cv2.imread(str(out))[..., ::-1]
    assert picture.shape[1] == 5 * (WIDTH + 2 * PAD)  # one row: input, overlay, 3 heat-maps
    assert picture.shape[0] > TITLE_HEIGHT + HEIGHT
    image = cv2.imread(str(image_path))[..., ::-1]
    np.testing.assert_array_equal(panel(picture, 0), image)  # the input, pixel for pixel
    prediction = inference_model(quickstart_model, str(image_path))
    overlay = draw_prediction(image.copy(), prediction, quickstart_model.class_names,
                              quickstart_model.dataset_meta['palette'], opacity=0.5)
    np.testing.assert_array_equal(panel(picture, 1), overlay)
    heat_maps = [panel(picture, index).astype(int) for index in (2, 3, 4)]
    assert np.abs(heat_maps[0] - heat_maps[1]).mean() > 1  # different classes, different maps
    assert np.abs(heat_maps[0] - image).mean() > 1


def test_demo_scale_and_opacity(quickstart_checkpoint, image_path, tmp_path):
    out = tmp_path / 'demo.png'
    run_demo(str(image_path), str(CONFIG), str(quickstart_checkpoint), '--out', str(out),
             '--scale', '2', '--opacity', '1')
    picture = cv2.imread(str(out))[..., ::-1]
    assert picture.shape[1] == 2 * (2 * WIDTH + 2 * PAD)  # input and overlay only
    image = cv2.imread(str(image_path))[..., ::-1]
    np.testing.assert_array_equal(panel(picture, 0, 2)[::2, ::2], image)
    assert not np.array_equal(panel(picture, 1, 2)[::2, ::2], image)  # opaque class colours


def test_demo_open_vocabulary(quickstart_checkpoint, image_path, tmp_path):
    out = tmp_path / 'demo.png'
    run_demo(str(image_path), str(CONFIG), str(quickstart_checkpoint), '--out', str(out),
             '--classes', 'grass, water,sky')
    picture = cv2.imread(str(out))
    assert picture.shape[1] == 5 * (WIDTH + 2 * PAD)  # every queried name is drawn


def test_demo_refuses_unknown_names(quickstart_checkpoint, image_path, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_demo(str(image_path), str(CONFIG), str(quickstart_checkpoint), '--out',
                 str(tmp_path / 'x.png'), '--score-maps', 'grass')
    assert exit_.value.code == 1 and 'grass' in capsys.readouterr().err


def test_classes_change_score_maps_not_the_decoder(quickstart_model, image_path):
    _, _, trained = demo_picture(quickstart_model, str(image_path), score_classes=['sky'])
    picture, boxes, asked = demo_picture(quickstart_model, str(image_path),
                                         class_names=['grass', 'water', 'sky'])
    assert len(boxes) == 2 + 3
    assert asked.class_names == ('grass', 'water', 'sky')
    assert torch.equal(asked.data_sample.pred_sem_seg.data, trained.data_sample.pred_sem_seg.data)
    assert torch.equal(asked.data_sample.seg_logits.data, trained.data_sample.seg_logits.data)
    sky = quickstart_model.class_names.index('sky')
    assert not torch.allclose(asked.score_maps[0], trained.score_maps[sky])
    # the overlay shows the trained classes whatever is asked
    _, _, again = demo_picture(quickstart_model, str(image_path), class_names=['grass'],
                               score_classes=[])
    assert torch.equal(again.data_sample.pred_sem_seg.data, trained.data_sample.pred_sem_seg.data)


def test_softmax_maps_are_probabilities(quickstart_model, image_path):
    _, _, result = demo_picture(quickstart_model, str(image_path), class_names=['grass', 'sky'],
                                softmax=True)
    probabilities = torch.softmax(result.score_maps / quickstart_model.tau, dim=0)
    torch.testing.assert_close(probabilities.sum(0), torch.ones(HEIGHT, WIDTH))


# ------------------------------------------------------------------ zero-shot configs
ZERO_SHOT = ROOT / 'configs/zero_shot/zero-shot_clip-tiny-r_synthetic-128x128.py'
TINY_CLIP = ROOT / 'configs/clip/clip_tiny-r_1xb32-0.3k_synthetic-captions-128x128.py'
QUERY = ['grass', 'water', 'sky']


@pytest.fixture(scope='module')
def clip_archive(tmp_path_factory) -> Path:
    """A tiny random CLIP of the zero-shot synthetic config's shape (the tiny contrastive CLIP
    config's), as a plain state dict."""
    from denseclip.clip import CLIP
    torch.manual_seed(0)
    clip = CLIP(**Config.fromfile(TINY_CLIP).model.arch)
    path = tmp_path_factory.mktemp('clip') / 'RN-tiny.pth'
    torch.save(clip.state_dict(), path)
    return path


def test_zero_shot_demo_predicts_the_asked_classes(clip_archive, image_path, tmp_path, capsys):
    """With a zero-shot config the CHECKPOINT is the CLIP archive and --classes are predicted."""
    from denseclip.apis.visualization import default_palette
    out = tmp_path / 'zero_shot.png'
    run_demo(str(image_path), str(ZERO_SHOT), str(clip_archive), '--out', str(out),
             '--classes', ', '.join(QUERY))
    assert 'input + prediction + 3 score map(s), each panel 96x80' in capsys.readouterr().out
    picture = cv2.imread(str(out))[..., ::-1]
    assert picture.shape[1] == 5 * (WIDTH + 2 * PAD)  # input, prediction, one map per name
    model = init_model(ZERO_SHOT, str(clip_archive))
    trained = inference_model(model, str(image_path))
    assert trained.seg_logits.data.shape == (8, HEIGHT, WIDTH)  # the dataset's 8 classes
    with model.using_classes(QUERY):
        asked = inference_model(model, str(image_path))
    assert asked.seg_logits.data.shape == (3, HEIGHT, WIDTH)
    image = cv2.imread(str(image_path))[..., ::-1]
    overlay = draw_prediction(image.copy(), asked, QUERY, default_palette(3), opacity=0.5)
    np.testing.assert_array_equal(panel(picture, 1), overlay)  # the prediction over QUERY
    _, _, result = demo_picture(model, str(image_path), class_names=QUERY, softmax=True)
    assert result.predicted_classes == tuple(QUERY) and len(model.class_names) == 8
    assert torch.equal(result.data_sample.pred_sem_seg.data, asked.pred_sem_seg.data)
    # the score maps are the logits over 100 (CLIP's logit scale)
    torch.testing.assert_close(result.score_maps * 100, asked.seg_logits.data, rtol=1e-4,
                               atol=1e-3)


def test_config_and_checkpoint_come_first_and_the_old_order_still_works(
        quickstart_checkpoint, image_path, tmp_path, capsys):
    new, old = tmp_path / 'new.png', tmp_path / 'old.png'
    run_demo(str(CONFIG), str(quickstart_checkpoint), str(image_path), '--out', str(new))
    assert 'notice' not in capsys.readouterr().err
    run_demo(str(image_path), str(CONFIG), str(quickstart_checkpoint), '--out', str(old))
    assert 'notice: tools/demo.py takes CONFIG CHECKPOINT IMAGE now' in capsys.readouterr().err
    assert new.read_bytes() == old.read_bytes()
