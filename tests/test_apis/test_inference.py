"""Inference on a quickstart-config checkpoint: mmseg's init_model / inference_model, its
inferencer, and the pixel-text score maps on the prediction's own input (CPU; GPU if present).

The checkpoint is the quickstart model, randomly initialised and perturbed, saved as the
runner saves one (``state_dict`` + ``meta.dataset_meta``); images are written by the tests.
"""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmseg.apis import MMSegInferencer
from mmseg.apis import inference_model as mmseg_inference_model
from mmseg.structures import SegDataSample

from denseclip.apis import (DenseCLIPInferencer, inference_model, init_model,
                            predict_with_score_maps)
from denseclip.apis.inferencer import FORWARDS_SHOW_PROGRESS
from denseclip.engine.config import fill_class_names

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
NUM_CLASSES = 8


pytestmark = pytest.mark.usefixtures('single_thread')  # tests/conftest.py


def save_quickstart_checkpoint(path: Path, seed: int = 0) -> Path:
    """The quickstart model with perturbed weights, saved with its dataset's metainfo."""
    cfg = Config.fromfile(CONFIG)
    torch.manual_seed(seed)
    model = init_model(cfg)
    model.init_weights()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if tensor.is_floating_point() and 'running_var' not in name:
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator))
    meta = dict(dataset_meta=dict(cfg.train_dataloader.dataset.metainfo))
    torch.save(dict(state_dict=model.state_dict(), meta=meta), path)
    return path


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory) -> Path:
    return save_quickstart_checkpoint(tmp_path_factory.mktemp('ckpt') / 'quickstart.pth')


@pytest.fixture(scope='module')
def image_path(tmp_path_factory) -> Path:
    """A non-square 80 x 96 image: the test pipeline resizes it, the results come back."""
    image = np.random.default_rng(0).integers(0, 256, (80, 96, 3), dtype=np.uint8)
    image[20:60, 10:50] = (30, 200, 40)
    path = tmp_path_factory.mktemp('img') / 'image.png'
    cv2.imwrite(str(path), image)
    return path


@pytest.fixture(scope='module')
def model(checkpoint):
    return init_model(CONFIG, str(checkpoint))


def test_inference_model_takes_a_path_or_an_array(model, image_path):
    from_path = inference_model(model, str(image_path))
    from_array = inference_model(model, cv2.imread(str(image_path)))
    for result in (from_path, from_array):
        assert isinstance(result, SegDataSample)
        assert result.pred_sem_seg.shape == (80, 96)  # the original size
        assert result.seg_logits.data.shape == (NUM_CLASSES, 80, 96)
    assert torch.equal(from_path.pred_sem_seg.data, from_array.pred_sem_seg.data)
    labels = from_path.pred_sem_seg.data
    assert 0 <= int(labels.min()) and int(labels.max()) < NUM_CLASSES
    assert torch.equal(labels[0], from_path.seg_logits.data.argmax(0))
    assert model.dataset_meta['classes'][0] == 'wall'
    batch = inference_model(model, [str(image_path), str(image_path)])
    assert len(batch) == 2 and torch.equal(batch[1].pred_sem_seg.data, labels)


def test_inference_model_is_mmseg_s_without_its_side_effect(checkpoint, image_path):
    """mmseg's inference_model switches model.cfg's pipeline to arrays for good; ours not."""
    ours, theirs = init_model(CONFIG, str(checkpoint)), init_model(CONFIG, str(checkpoint))
    expected = mmseg_inference_model(theirs, str(image_path))
    inference_model(ours, cv2.imread(str(image_path)))
    result = inference_model(ours, str(image_path))  # a path after an array
    assert torch.equal(result.seg_logits.data, expected.seg_logits.data)
    assert ours.cfg.test_pipeline[0]['type'] == 'LoadImageFromFile'


def test_inferencer_takes_the_config_path(checkpoint, image_path, model, tmp_path):
    inferencer = DenseCLIPInferencer(str(CONFIG), weights=str(checkpoint), device='cpu',
                                     show_progress=False)
    sample = inferencer(str(image_path), return_datasamples=True)
    expected = inference_model(model, str(image_path)).pred_sem_seg.data
    assert torch.equal(sample.pred_sem_seg.data, expected)
    result = inferencer(str(image_path), out_dir=str(tmp_path))
    assert result['predictions'].shape == (80, 96)
    assert (tmp_path / 'vis' / 'image.png').is_file()
    assert cv2.imread(str(tmp_path / 'vis' / 'image.png')).shape == (80, 96, 3)


def test_inferencer_show_progress_reaches_mmengine(checkpoint):
    """mmseg 1.2.2's inferencer does not forward ``show_progress``; ours sets it either way."""
    inferencer = DenseCLIPInferencer(str(CONFIG), weights=str(checkpoint), device='cpu',
                                     show_progress=False)
    assert inferencer.show_progress is False


def test_mmseg_inferencer_takes_a_config_with_class_names(checkpoint, image_path, model):
    cfg = fill_class_names(Config.fromfile(CONFIG))
    quiet = dict(show_progress=False) if FORWARDS_SHOW_PROGRESS else {}  # not in mmseg 1.2.2
    inferencer = MMSegInferencer(cfg, weights=str(checkpoint), device='cpu', **quiet)
    sample = inferencer(str(image_path), return_datasamples=True)
    expected = inference_model(model, str(image_path)).pred_sem_seg.data
    assert torch.equal(sample.pred_sem_seg.data, expected)


def test_score_maps_use_the_prediction_input(model, image_path):
    result = predict_with_score_maps(model, str(image_path))
    expected = inference_model(model, str(image_path))
    assert torch.equal(result.data_sample.pred_sem_seg.data, expected.pred_sem_seg.data)
    assert result.score_maps.shape == (NUM_CLASSES, 80, 96)
    assert result.class_names == model.class_names
    assert result.score_maps.abs().max() <= 1 + 1e-5  # cosine similarities


def test_score_maps_equal_a_direct_computation(model, tmp_path):
    """At the pipeline's own size (128 x 128: no resize, no padding) the maps are the model's
    score maps on the normalised RGB image, upsampled bilinearly."""
    image = np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    result = predict_with_score_maps(model, image)
    preprocessor = model.data_preprocessor
    rgb = torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1).float()[None]
    inputs = (rgb - preprocessor.mean) / preprocessor.std
    with torch.no_grad():
        expected = F.interpolate(model.score_maps(inputs), size=(128, 128), mode='bilinear',
                                 align_corners=False)[0]
    torch.testing.assert_close(result.score_maps, expected)


def test_open_vocabulary_changes_score_maps_not_the_prediction(model, image_path):
    trained = predict_with_score_maps(model, str(image_path))
    asked = predict_with_score_maps(model, str(image_path), ['sky', 'grass', 'water'])
    assert asked.class_names == ('sky', 'grass', 'water')
    assert asked.score_maps.shape == (3, 80, 96)
    assert torch.equal(asked.data_sample.pred_sem_seg.data, trained.data_sample.pred_sem_seg.data)
    assert torch.equal(asked.data_sample.seg_logits.data, trained.data_sample.seg_logits.data)
    sky = model.class_names.index('sky')
    assert not torch.allclose(asked.score_maps[1], trained.score_maps[sky])
    # asking for the trained names themselves reproduces the trained maps
    same = predict_with_score_maps(model, str(image_path), model.class_names)
    torch.testing.assert_close(same.score_maps, trained.score_maps)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_inference_on_gpu_matches_cpu(checkpoint, image_path, model):
    gpu_model = init_model(CONFIG, str(checkpoint), device='cuda:0')
    on_gpu = predict_with_score_maps(gpu_model, str(image_path))
    on_cpu = predict_with_score_maps(model, str(image_path))
    assert on_gpu.data_sample.pred_sem_seg.data.is_cuda
    torch.testing.assert_close(on_gpu.score_maps.cpu(), on_cpu.score_maps, atol=1e-3, rtol=0)
    agree = (on_gpu.data_sample.pred_sem_seg.data.cpu() ==
             on_cpu.data_sample.pred_sem_seg.data).float().mean()
    assert agree > 0.99
