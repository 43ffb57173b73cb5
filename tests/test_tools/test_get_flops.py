"""``tools/get_flops.py``: ``--json`` prints one object with the documented keys, the table
states the conventions (the counting itself: tests/test_analysis/test_flops.py)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from denseclip.analysis.flops import PARTS

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
JSON_KEYS = {'gflops', 'params_m', 'params_m_total', 'params_m_trainable', 'per_module_gflops'}


def _run_tool(*args: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, str(ROOT / 'tools/get_flops.py'), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_cli_json_prints_one_object_with_the_documented_keys():
    report = json.loads(_run_tool(QUICKSTART, '--shape', '64', '--json'))
    assert JSON_KEYS <= set(report)
    assert report['input_shape'] == [3, 64, 64]
    assert set(PARTS) | {'others'} <= set(report['per_module_gflops'])
    assert report['excluded'] == ['text_encoder'] and report['conventions']
    assert report['params_m'] < report['params_m_total']


def test_cli_table_states_the_conventions(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location('get_flops', ROOT / 'tools/get_flops.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setattr(sys, 'argv', ['get_flops.py', QUICKSTART, '--shape', '64', '96',
                                      '--legacy-fvcore'])
    tool.main()  # in-process: the subprocess test above covers the start-up
    out = capsys.readouterr().out
    assert 'input 1x3x64x96' in out and '(excluded)' in out and 'Conventions' in out
    assert '--legacy-fvcore' in out
