"""tools/plot_logs.py on a real log (the reading of logs in general:
tests/test_analysis/test_training_curves.py).

The log comes from tools/train.py running the quickstart config for 4 iterations (validation
every 2) on 6 tiny synthetic images written by the test.
"""
import os
import runpy
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from denseclip.analysis.training_curves import find_json_logs, read_curves
from denseclip.datasets import generate_synthetic_ade20k

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
ITERS = 4


@pytest.fixture(scope='module')
def work_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('plot_logs')
    data = generate_synthetic_ade20k(root / 'data', num_train=4, num_val=2, image_size=64)
    work_dir = root / 'work'
    options = [f'{split}_dataloader.dataset.data_root={data}' for split in ('train', 'val', 'test')]
    options += [f'train_cfg.max_iters={ITERS}', 'train_cfg.val_interval=2',
                'default_hooks.logger.interval=1', 'train_dataloader.batch_size=2',
                f'default_hooks.checkpoint.interval={ITERS}']
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools/train.py'), str(CONFIG), '--work-dir', str(work_dir),
         '--cfg-options', *options],
        cwd=root, env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return work_dir


def test_reads_losses_and_miou_of_a_quickstart_run(work_dir):
    logs = find_json_logs(work_dir)
    assert len(logs) == 1 and logs[0].name.endswith('.json')
    curves = read_curves(logs)
    assert set(curves.losses) == {'loss', 'decode.loss_ce', 'identity.loss_ce'}
    assert curves.losses['loss'][0] == list(range(1, ITERS + 1))
    assert curves.metrics['mIoU'][0] == [2, 4]
    for step, total in zip(*curves.losses['loss']):
        parts = [curves.losses[key][1][step - 1] for key in ('decode.loss_ce', 'identity.loss_ce')]
        assert total == pytest.approx(sum(parts), rel=1e-5)


def test_tool_draws_curves(work_dir, tmp_path, capsys):
    out = tmp_path / 'plots' / 'curves.png'
    argv = sys.argv
    sys.argv = ['tools/plot_logs.py', str(work_dir), '--out', str(out)]
    try:
        runpy.run_path(str(ROOT / 'tools/plot_logs.py'), run_name='__main__')
    finally:
        sys.argv = argv
    assert 'loss, decode.loss_ce, identity.loss_ce and mIoU, mAcc, aAcc' in capsys.readouterr().out
    picture = cv2.imread(str(out))
    assert picture.shape == (400, 1100, 3)
    assert (picture < 128).mean() > 0.01  # lines and text, not a blank page
