"""ONNX export of the quickstart's tiny DenseCLIP and ONNX Runtime inference against eager
PyTorch. Relative error: ``max|onnx - torch| / max|torch|`` over all logits, at most 1e-4."""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from denseclip.apis import inference_model, init_model
from denseclip.deploy import ExportError
from denseclip.deploy.export import (METADATA_KEY, deploy_metadata, export_checkpoint,
                                     export_model)
from denseclip.deploy.ort import OrtSegmentor
from denseclip.engine.config import build_segmentor, prepare_config

QUICKSTART = 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
TOLERANCE = 1e-4
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures('single_thread')


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    assert actual.shape == expected.shape
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def save_checkpoint(path, cfg_options=None) -> str:
    """Random weights of the quickstart model (BN statistics moved off 0/1)."""
    torch.manual_seed(0)
    model = build_segmentor(prepare_config(QUICKSTART, cfg_options, device='cpu'))
    for name, buffer in model.named_buffers():
        if name.endswith('running_mean') or name.endswith('running_var'):
            buffer.uniform_(0.5, 1.5)
    torch.save(dict(state_dict=model.state_dict(), meta={}), path)
    return str(path)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory) -> str:
    return save_checkpoint(tmp_path_factory.mktemp('deploy') / 'tiny.pth')


@pytest.fixture(scope='module')
def model(checkpoint):
    return init_model(QUICKSTART, checkpoint)


@pytest.fixture(scope='module')
def dynamic_onnx(checkpoint, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp('deploy') / 'tiny_dynamic.onnx')
    result = export_checkpoint(QUICKSTART, checkpoint, out, shape=(64, 64), dynamic=True)
    assert result['dynamic_shape'] and result['num_classes'] == 8
    return out


def torch_inference(model, batch: np.ndarray) -> np.ndarray:
    size = batch.shape[2:]
    metas = [dict(img_shape=size, ori_shape=size, pad_shape=size)] * len(batch)
    with torch.no_grad():
        return model.inference(torch.from_numpy(batch), metas).numpy()


def test_static_export_through_the_tool(checkpoint, model, tmp_path, run_tool):
    out = tmp_path / 'tiny.onnx'
    proc = run_tool('export_onnx.py', QUICKSTART, checkpoint, '--out', out, '--shape', 64, 96,
                    cwd=ROOT)
    assert proc.returncode == 0, proc.output[-3000:]
    assert 'input 64x96' in proc.stdout and '8 classes' in proc.stdout
    runtime = OrtSegmentor(str(out))
    batch = np.random.default_rng(0).standard_normal((2, 3, 64, 96), dtype=np.float32)
    assert relative_error(runtime.logits(batch), torch_inference(model, batch)) <= TOLERANCE
    with pytest.raises(ExportError, match='exported for 64x96 inputs.*--dynamic-shape'):
        runtime.logits(batch[:, :, :, :64])
    # what inference needs is in the file; the text encoder is not
    meta = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}[METADATA_KEY])
    assert meta['class_names'] == list(model.class_names) == runtime.class_names
    assert len(meta['palette']) == 8 and meta['bgr_to_rgb'] and meta['input_shape'] == [64, 96]
    assert meta['test_cfg']['mode'] == 'whole' and meta['test_resize']['keep_ratio']
    np.testing.assert_allclose(meta['std'], model.data_preprocessor.std.flatten().tolist())
    graph = onnx.load(str(out)).graph
    shapes = {tuple(init.dims) for init in graph.initializer}
    assert tuple(model.text_encoder.token_embedding.weight.shape) not in shapes
    assert (1, 8, 64) in shapes  # the folded class embeddings [1, K, D]


def test_dynamic_export_two_sizes_and_slide(model, dynamic_onnx):
    runtime = OrtSegmentor(dynamic_onnx)
    rng = np.random.default_rng(1)
    for shape in [(1, 3, 64, 64), (2, 3, 80, 112)]:
        batch = rng.standard_normal(shape, dtype=np.float32)
        assert relative_error(runtime.inference(batch), torch_inference(model, batch)) <= TOLERANCE
    slide = dict(mode='slide', crop_size=(64, 64), stride=(40, 40))
    model.test_cfg.update(slide)
    runtime.meta['test_cfg'].update(slide)
    try:
        batch = rng.standard_normal((2, 3, 96, 150), dtype=np.float32)  # 2 x 4 crops
        assert relative_error(runtime.inference(batch), torch_inference(model, batch)) <= TOLERANCE
    finally:
        model.test_cfg.mode = 'whole'


def test_predict_matches_inference_model(model, dynamic_onnx):
    """Test resize (keep ratio to 128), BGR -> RGB, normalisation, resize back."""
    image = np.random.default_rng(2).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    expected = inference_model(model, image).seg_logits.data.numpy()
    actual = OrtSegmentor(dynamic_onnx).predict(image)
    assert actual.shape == (8, 70, 90) and actual.dtype == np.float32
    assert relative_error(actual, expected) <= TOLERANCE


def test_missing_checkpoint_is_named(tmp_path, run_tool):
    proc = run_tool('export_onnx.py', QUICKSTART, tmp_path / 'nope.pth', '--out',
                    tmp_path / 'x.onnx', cwd=ROOT)
    assert proc.returncode != 0 and 'nope.pth' in proc.last_line
    assert 'does not exist' in proc.last_line and not (tmp_path / 'x.onnx').exists()


def test_input_smaller_than_the_stride_is_refused(checkpoint, tmp_path):
    with pytest.raises(ExportError, match=r'--shape 16 16: .*output stride 32'):
        export_checkpoint(QUICKSTART, checkpoint, str(tmp_path / 'x.onnx'), shape=(16, 16))


def test_pre_model_prompting_is_refused(tmp_path):
    options = dict(model=dict(prompting='pre+post'))
    checkpoint = save_checkpoint(tmp_path / 'pre.pth', options)
    with pytest.raises(ExportError, match=r"prompting='pre\+post'.*'post' or 'none'"):
        export_checkpoint(QUICKSTART, checkpoint, str(tmp_path / 'x.onnx'), shape=(64, 64),
                          cfg_options=options)
    assert not (tmp_path / 'x.onnx').exists()


def test_a_zero_shot_segmentor_is_refused_by_its_type(tmp_path):
    zero_shot = 'configs/zero_shot/zero-shot_clip-tiny-r_synthetic-128x128.py'
    cfg = prepare_config(zero_shot, device='cpu')
    model = build_segmentor(cfg).eval()
    with pytest.raises(ExportError, match=r"'ZeroShotCLIPSegmentor' cannot be exported: it has "
                       r"no decode head.*prompting='post' or 'none'"):
        export_model(model, cfg, str(tmp_path / 'x.onnx'), shape=(128, 128))
    assert not (tmp_path / 'x.onnx').exists()


def test_test_time_padding_of_the_data_preprocessor_is_refused(tmp_path):
    options = dict(model=dict(data_preprocessor=dict(test_cfg=dict(size_divisor=32))))
    cfg = prepare_config(QUICKSTART, options, device='cpu')
    model = build_segmentor(cfg).eval()
    with pytest.raises(ExportError, match=r"model\.data_preprocessor\.test_cfg=\{'size_divisor'"
                       r": 32\}: test-time padding"):
        export_model(model, cfg, str(tmp_path / 'x.onnx'), shape=(64, 64))
    assert not (tmp_path / 'x.onnx').exists()
    # mmseg reads no padding from model.test_cfg: a size_divisor there changes nothing
    cfg = prepare_config(QUICKSTART, dict(model=dict(test_cfg=dict(size_divisor=32))),
                         device='cpu')
    metadata = deploy_metadata(cfg, build_segmentor(cfg), (64, 64), False)
    assert metadata['test_cfg']['mode'] == 'whole' and metadata['class_names'][0] == 'wall'


def test_ort_refuses_a_file_without_metadata(tmp_path):
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node('Identity', ['x'], ['y'])], 'g',
        [onnx.helper.make_tensor_value_info('x', onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info('y', onnx.TensorProto.FLOAT, [1])])
    path = tmp_path / 'plain.onnx'
    onnx.save(onnx.helper.make_model(graph), str(path))
    with pytest.raises(ExportError, match='no .denseclip. metadata.*tools/export_onnx.py'):
        OrtSegmentor(str(path))


def test_missing_onnxruntime_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    with pytest.raises(ImportError, match=r'onnxruntime .*pip install -e \.\[deploy\]'):
        OrtSegmentor('any.onnx')
