"""Benchmarking (``denseclip.analysis.benchmark``) on the quickstart's tiny DenseCLIP: the
timing protocol, peak memory, synthetic batches, inference and training steps with and without
the fast paths (the command line: tests/test_tools/test_benchmark.py)."""
from pathlib import Path

import pytest
import torch

from denseclip.analysis.benchmark import (PeakMemory, apply_fast_paths, benchmark_inference,
                                          benchmark_training, build_train_optim_wrapper,
                                          compare_fast_paths, compare_inference, inference_step,
                                          synthetic_batch, time_runs)
from denseclip.engine import BFloat16OptimWrapper
from denseclip.engine.config import build_segmentor, prepare_config

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
SLIDE_OPTIONS = {'model.test_cfg.crop_size': (64, 64), 'model.test_cfg.stride': (48, 48)}


@pytest.fixture(scope='module')
def cfg():
    return prepare_config(QUICKSTART, SLIDE_OPTIONS, device='cpu')


def test_time_runs_excludes_warmup_and_times_every_run():
    calls = []
    runs = time_runs(lambda: calls.append(1), warmup=2, iters=3, repeats=4,
                     device=torch.device('cpu'))
    assert len(calls) == 2 + 3 * 4 and len(runs) == 4 and all(run >= 0 for run in runs)


def test_peak_memory_sees_an_allocation():
    with PeakMemory(torch.device('cpu')) as memory:
        block = torch.ones(64, 2**20, dtype=torch.uint8)  # 64 MiB
        block += 1
    assert memory.kind.startswith('peak_rss') and memory.mb >= 64


def test_synthetic_batch_layout():
    data = synthetic_batch(2, (32, 48), num_classes=5, with_labels=True)
    assert [image.shape for image in data['inputs']] == [(3, 32, 48)] * 2
    assert data['inputs'][0].dtype == torch.uint8
    sample = data['data_samples'][1]
    assert sample.img_shape == (32, 48) and sample.gt_sem_seg.data.max() < 5


@pytest.mark.parametrize('mode', ['whole', 'slide'])
def test_benchmark_inference(cfg, mode):
    model = build_segmentor(cfg)
    before = dict(model.test_cfg)
    result = benchmark_inference(model, mode, (96, 128), batch_size=2, warmup=1, iters=1,
                                 repeats=2)
    assert result['mode'] == mode and result['items_per_s'] > 0
    assert len(result['runs_s_per_iter']) == 2 and result['peak_memory_mb'] > 0
    assert dict(model.test_cfg) == before  # the mode switch is undone


def test_benchmark_training_with_amp(cfg):
    model = build_segmentor(cfg)
    optim_wrapper = build_train_optim_wrapper(model, cfg, amp=True)
    if not torch.cuda.is_available():
        assert isinstance(optim_wrapper, BFloat16OptimWrapper)
    weight = model.decode_head.conv_seg.weight.detach().clone()
    result = benchmark_training(model, cfg, (64, 64), batch_size=2, warmup=0, iters=1,
                                repeats=1, optim_wrapper=optim_wrapper)
    assert result['iters_per_s'] > 0 and result['images_per_s'] == 2 * result['iters_per_s']
    assert not torch.equal(weight, model.decode_head.conv_seg.weight)  # it really trained
    assert not model.training


def test_compare_fast_paths_interleaves_the_states_and_restores_the_model(cfg):
    model = build_segmentor(cfg)
    order = []

    def step_for(amp):
        step = inference_step(model, 'slide', (96, 128), amp=amp)

        def recorded():
            order.append((model.cache_text, model.test_cfg.slide_batch_size, amp,
                          model.backbone.conv1.weight.is_contiguous(
                              memory_format=torch.channels_last)))
            return step()
        return recorded

    states = {'default': {}, 'no cache': dict(text_cache=False),
              'batched': dict(slide_batch_size=4), 'nhwc': dict(channels_last=True),
              'amp': dict(amp=True)}
    result = compare_fast_paths(model, states, step_for, rounds=2, warmup=1)
    expected = [(True, None, False, False), (False, None, False, False),
                (True, 4, False, False), (True, None, False, True), (True, None, True, False)]
    assert order == expected * 3  # the warm-ups, then two rounds, state after state
    assert set(result) == set(states)
    assert all(len(state['runs_s_per_iter']) == 2 for state in result.values())
    assert model.cache_text and model.test_cfg.slide_batch_size is None
    assert model.backbone.conv1.weight.is_contiguous()


def test_compare_inference_states(cfg):
    model = build_segmentor(cfg)
    before = dict(model.test_cfg)
    result = compare_inference(model, 'slide', (96, 128), rounds=1, warmup=0)
    # 96 x 128 with 64 crops at stride 48: 2 x 3 crops, all in one pass
    assert list(result['states']) == ['default', 'no text cache', 'slide batch 6',
                                      'channels last', 'amp']
    assert dict(model.test_cfg) == before


def test_apply_fast_paths_sets_every_switch_and_resets_them(cfg):
    model = build_segmentor(cfg)
    apply_fast_paths(model, text_cache=False, slide_batch_size=3, channels_last=True)
    assert not model.cache_text and model.test_cfg.slide_batch_size == 3
    assert model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    apply_fast_paths(model)
    assert model.cache_text and model.test_cfg.slide_batch_size is None
    assert model.backbone.conv1.weight.is_contiguous()


def test_compare_onnxruntime_same_images_interleaved(cfg, tmp_path):
    """Eager against ONNX Runtime (an export of the same weights): both timed every round,
    their logits equal (relative error of the ONNX export, see tests/test_deploy)."""
    from denseclip.analysis.benchmark import compare_onnxruntime
    from denseclip.deploy.export import export_model
    from denseclip.deploy.ort import OrtSegmentor
    model = build_segmentor(cfg)
    export_model(model, cfg, str(tmp_path / 'tiny.onnx'), (64, 64), dynamic=True)
    runtime = OrtSegmentor(str(tmp_path / 'tiny.onnx'), threads=1)
    before = dict(model.test_cfg)
    results = {mode: compare_onnxruntime(model, runtime, mode, (96, 128), rounds=2, warmup=0)
               for mode in ('whole', 'slide')}
    assert set(results['whole']['states']) == {'pytorch', 'onnxruntime'}
    # 96 x 128 in 64-px crops every 48 px: 2 x 3 windows, run as one batch by the runtime
    assert set(results['slide']['states']) == {'pytorch', 'pytorch, slide batch 6',
                                               'onnxruntime'}
    for result in results.values():
        assert result['relative_error'] <= 1e-4
        assert all(len(state['runs_s_per_iter']) == 2 and state['s_per_iter'] > 0
                   for state in result['states'].values())
    assert dict(model.test_cfg) == before and runtime.meta['test_cfg']['mode'] == 'slide'
    # a file of other weights (tools/benchmark.py --onnx): timed, its logits not compared
    other = compare_onnxruntime(model, runtime, 'whole', (96, 128), rounds=1, warmup=0,
                                same_weights=False)
    assert other['relative_error'] is None
    assert 'weights differ' in other['relative_error_note']
    assert set(other['states']) == {'pytorch', 'onnxruntime'}
