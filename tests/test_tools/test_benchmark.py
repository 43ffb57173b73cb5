"""``tools/benchmark.py`` on the quickstart's tiny DenseCLIP: the command line's JSON, and the
switches reaching the measuring code (``denseclip.analysis.benchmark``, tested in
tests/test_analysis/test_benchmark.py)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'


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


def load_tool():
    spec = importlib.util.spec_from_file_location('benchmark', ROOT / 'tools/benchmark.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_cli_compare_train(monkeypatch, capsys):
    tool = load_tool()
    monkeypatch.setattr(sys, 'argv', ['benchmark.py', QUICKSTART, '--json', '--warmup', '0',
                                      '--repeats', '1', '--mode', 'train', '--batch-size', '2',
                                      '--compare'])
    tool.main()  # in-process: the subprocess test above covers the start-up
    out = json.loads(capsys.readouterr().out)
    (result, ) = out['results']
    assert result['mode'] == 'train' and result['shape'] == [64, 64]  # the config's crop
    assert set(result['states']) == {'default', 'channels last', 'amp'}
    assert all(state['s_per_iter'] > 0 for state in result['states'].values())


@pytest.mark.parametrize('switches, expected', [
    ([], (True, 2, False)),  # the config's slide batch size without the switch
    (['--no-text-cache', '--slide-batch-size', '3', '--channels-last'], (False, 3, True)),
])
def test_cli_switches_reach_the_model(monkeypatch, switches, expected):
    tool = load_tool()
    seen = []

    def record(model, mode, *args, **kwargs):
        seen.append((model.cache_text, model.test_cfg.slide_batch_size,
                     model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)))
        return {}

    monkeypatch.setattr(tool, 'benchmark_inference', record)
    monkeypatch.setattr(sys, 'argv', ['benchmark.py', QUICKSTART, '--infer-modes', 'whole',
                                      *switches, '--cfg-options',
                                      'model.test_cfg.slide_batch_size=2'])
    settings, _ = tool.measure(tool.parse_args())
    assert seen == [expected]
    assert settings['text_cache'] == expected[0]


def test_cli_onnxruntime_backend():
    """Exports the model, then times eager and ONNX Runtime on the same images."""
    options = ['--cfg-options', 'model.test_cfg.crop_size=(64,64)',
               'model.test_cfg.stride=(48,48)']
    out = _run_tool('--backend', 'onnxruntime', '--shape', '64', '96', *options)
    settings = out['settings']
    assert settings['backend'] == 'onnxruntime' and settings['onnx_mb'] > 0
    assert settings['export_s'] > 0 and settings['device_name']
    whole, slide = out['results']
    assert set(whole['states']) == {'pytorch', 'onnxruntime'}
    assert set(slide['states']) == {'pytorch', 'pytorch, slide batch 2', 'onnxruntime'}
    assert whole['relative_error'] <= 1e-4 and slide['relative_error'] <= 1e-4


def test_cli_onnx_file_reports_no_relative_error(monkeypatch, capsys, tmp_path):
    """``--onnx FILE`` (say, an export of a trained checkpoint) next to the eager model's random
    weights: the logits are not compared, the output says why."""
    import denseclip.deploy.ort
    from denseclip.analysis.benchmark import OTHER_WEIGHTS_NOTE
    tool = load_tool()
    opened, seen = [], []

    class Runtime:  # stands in for OrtSegmentor: compare_onnxruntime is tested on a real one
        def __init__(self, path, threads):
            opened.append(path)

    def compare(model, runtime, mode, *args, same_weights=True):
        seen.append(same_weights)
        return dict(mode=mode, shape=[64, 96], batch_size=1, relative_error=None,
                    relative_error_note=OTHER_WEIGHTS_NOTE,
                    states=dict(pytorch=dict(s_per_iter=2.0, runs_s_per_iter=[2.0],
                                             peak_memory_mb=1.0),
                                onnxruntime=dict(s_per_iter=1.0, runs_s_per_iter=[1.0],
                                                 peak_memory_mb=1.0)))

    monkeypatch.setattr(denseclip.deploy.ort, 'OrtSegmentor', Runtime)
    monkeypatch.setattr(tool, 'compare_onnxruntime', compare)
    onnx_file = str(tmp_path / 'trained.onnx')
    monkeypatch.setattr(sys, 'argv', ['benchmark.py', QUICKSTART, '--backend', 'onnxruntime',
                                      '--onnx', onnx_file, '--infer-modes', 'whole',
                                      '--shape', '64', '96'])
    tool.main()
    assert opened == [onnx_file] and seen == [False]
    out = capsys.readouterr().out
    assert 'max|a-b|' not in out
    assert 'logits: not measured: the ONNX file was not exported from the eager model' in out
    assert 'export_s' not in out  # nothing was exported


def test_cli_onnxruntime_refuses_training():
    proc = subprocess.run([sys.executable, str(ROOT / 'tools/benchmark.py'), QUICKSTART,
                           '--backend', 'onnxruntime', '--mode', 'train'],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and 'inference only' in proc.stderr
