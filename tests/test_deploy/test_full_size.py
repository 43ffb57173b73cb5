"""The full-size RN50 DenseCLIP (150 ADE20K classes, random weights) exported with a dynamic
shape and run by ONNX Runtime against eager PyTorch: relative error
``max|onnx - torch| / max|torch|`` at most 1e-4, whole inference at two sizes and slide
inference. Small images keep it short; the weights and widths are the real model's. About a
minute on one core, most of it the export."""
import numpy as np
import pytest
import torch

from denseclip.deploy.export import export_model
from denseclip.deploy.ort import OrtSegmentor
from denseclip.engine.config import build_segmentor, prepare_config

RN50 = 'configs/denseclip/denseclip_r50_fpn_8xb4-80k_ade20k-512x512.py'
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures('single_thread')]


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    assert actual.shape == expected.shape
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def torch_inference(model, batch: np.ndarray) -> np.ndarray:
    size = batch.shape[2:]
    metas = [dict(img_shape=size, ori_shape=size, pad_shape=size)] * len(batch)
    with torch.no_grad():
        return model.inference(torch.from_numpy(batch), metas).numpy()


def test_rn50_denseclip_150_classes(tmp_path):
    torch.manual_seed(0)
    cfg = prepare_config(RN50, device='cpu')
    model = build_segmentor(cfg)
    out = str(tmp_path / 'rn50.onnx')
    result = export_model(model, cfg, out, (64, 64), dynamic=True)
    assert result['num_classes'] == 150
    # backbone, context decoder, FPN and head (~51 M float32 parameters); the text encoder
    # (~63 M) is not in the file
    text_mb = sum(p.numel() for p in model.text_encoder.parameters()) * 4 / 2**20
    assert 150 < result['size_mb'] < 250 and text_mb > 200
    runtime = OrtSegmentor(out, threads=1)
    assert runtime.class_names == list(model.class_names) and len(runtime.palette) == 150
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 128, 128), (1, 3, 160, 224)]:
        batch = rng.standard_normal(shape, dtype=np.float32)
        assert relative_error(runtime.logits(batch), torch_inference(model, batch)) <= 1e-4
    slide = dict(mode='slide', crop_size=(128, 128), stride=(85, 85))  # 2 x 3 crops
    model.test_cfg.update(slide)
    runtime.meta['test_cfg'].update(slide)
    batch = rng.standard_normal((1, 3, 160, 224), dtype=np.float32)
    assert relative_error(runtime.inference(batch), torch_inference(model, batch)) <= 1e-4
