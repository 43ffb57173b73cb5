"""Benchmarking (``denseclip.utils.benchmark``, ``tools/benchmark.py``) on the quickstart's tiny
DenseCLIP: the timing protocol, peak memory, synthetic batches, inference and training steps
with and without the fast paths, and the command line's JSON."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from denseclip.utils import BFloat16OptimWrapper
from denseclip.utils.benchmark import (PeakMemory, benchmark_inference, benchmark_training,
                                       build_train_optim_wrapper, compare_fast_paths,
                                       compare_inference, inference_step, synthetic_batch,
                                       time_runs)
from denseclip.utils.build import build_segmentor, load_config

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
SLIDE_OPTIONS = {'model.test_cfg.crop_size': (64, 64), 'model.test_cfg.stride': (48, 48)}


@pytest.fixture(scope='module')
def cfg():
    return load_config(QUICKSTART, SLIDE_OPTIONS)


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


def _run_tool(*args: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, str(ROOT / 'tools/benchmark.py'), QUICKSTART,
                           '--json', '--warmup', '0', '--iters', '1', '--repeats', '2', *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_cli_infer_json():
    options = ['--cfg-options', 'model.test_cfg.crop_size=(64,64)',
               'model.test_cfg.stride=(48,48)']
    out = _run_tool('--shape', '96', '128', '--slide-batch-size', '4', '--channels-last',
                    '--amp', *options)
    assert out['settings']['slide_batch_size'] == 4 and out['settings']['channels_last']
    assert [result['mode'] for result in out['results']] == ['whole', 'slide']
    assert all(result['items_per_s'] > 0 and result['amp'] for result in out['results'])



def test_cli_compare_train(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location('benchmark', ROOT / 'tools/benchmark.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setattr(sys, 'argv', ['benchmark.py', QUICKSTART, '--json', '--warmup', '0',
                                      '--repeats', '1', '--mode', 'train', '--batch-size', '2',
                                      '--compare'])
    tool.main()  # in-process: the subprocess test above covers the start-up
    out = json.loads(capsys.readouterr().out)
    (result, ) = out['results']
    assert result['mode'] == 'train' and result['shape'] == [64, 64]  # the config's crop
    assert set(result['states']) == {'default', 'channels last', 'amp'}
    assert all(state['s_per_iter'] > 0 for state in result['states'].values())
