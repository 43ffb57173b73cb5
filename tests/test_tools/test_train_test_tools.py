"""End-to-end checks of tools/train.py, tools/test.py and tools/dist_train.sh on CPU.

A tiny FCN (tests/data/configs) trains for a few iterations on a handful of 32x40 images in
ADE20K's layout that the tests write themselves; the CPU fallbacks they go through (SyncBN ->
BN, gloo, DDP without device ids, bfloat16 AMP) are unit-tested in tests/test_engine
(test_dist.py, test_optim_wrappers.py).
"""
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'tests/data/configs/fcn_r18-w8_1xb2-4_ade20k-32x32.py'
TRAIN_ITERS = 2
cpu_only = pytest.mark.skipif(
    torch.cuda.is_available(), reason='checks the fallbacks for machines without CUDA')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run(cmd: list, cwd: Path, **env: str) -> str:
    """Run a tool (path relative to the repository root); return its stdout and stderr.

    ``cwd`` is a temporary directory: distributed evaluation leaves a ``.dist_test``
    directory in the working directory (mmengine's ``collect_results_cpu``).
    """
    cmd = [str(ROOT / arg) if arg.startswith('tools/') else arg for arg in cmd]
    # one thread per process: with two, tiny convolutions on this CPU are ~50x slower
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable, **env)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=180)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def data_options(data_root: Path) -> list:
    return ['--cfg-options'] + [
        f'{split}_dataloader.dataset.data_root={data_root}'
        for split in ('train', 'val', 'test')
    ]


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    """Four training and two validation images with labels 1-3 (0 is ignored)."""
    root = tmp_path_factory.mktemp('ade')
    rng = np.random.default_rng(0)
    for split, num in (('training', 4), ('validation', 2)):
        (root / 'images' / split).mkdir(parents=True)
        (root / 'annotations' / split).mkdir(parents=True)
        for i in range(num):
            label = np.ones((32, 40), np.uint8)
            label[16:, :20] = 2
            label[16:, 20:] = 3
            image = (label[..., None] * 60 + rng.integers(0, 40, (32, 40, 3))).astype(np.uint8)
            cv2.imwrite(str(root / 'images' / split / f'{i}.jpg'), image)
            cv2.imwrite(str(root / 'annotations' / split / f'{i}.png'), label)
    return root


@pytest.fixture(scope='module')
def checkpoint(data_root, tmp_path_factory) -> Path:
    work_dir = tmp_path_factory.mktemp('train')
    output = run([sys.executable, 'tools/train.py', str(CONFIG), '--work-dir', str(work_dir)] +
                 data_options(data_root) + [f'train_cfg.max_iters={TRAIN_ITERS}'],
                 cwd=work_dir)
    assert 'SyncBN -> BN in' in output
    assert f'Iter(train) [{TRAIN_ITERS}/{TRAIN_ITERS}]' in output
    return work_dir / f'iter_{TRAIN_ITERS}.pth'


def test_train_writes_checkpoint(checkpoint):
    assert checkpoint.is_file()
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)
    assert state['meta']['iter'] == TRAIN_ITERS
    assert 'decode_head.conv_seg.weight' in state['state_dict']


def miou(output: str) -> float:
    match = re.search(r'Iter\(test\) \[2/2\].*mIoU: ([\d.]+)', output)
    assert match, output[-4000:]
    return float(match.group(1))


def test_test_reports_miou_and_saves_results(checkpoint, data_root, tmp_path):
    work_dir, out_dir = tmp_path / 'work', tmp_path / 'out'
    output = run([sys.executable, 'tools/test.py', str(CONFIG), str(checkpoint),
                  '--work-dir', str(work_dir), '--out', str(out_dir), '--show-dir', 'vis'] +
                 data_options(data_root), cwd=tmp_path)
    assert 0 <= miou(output) <= 100
    assert sorted(p.name for p in out_dir.iterdir()) == ['0.png', '1.png']
    assert len(list((work_dir / 'vis').rglob('*.png'))) == 2


def test_test_tta(checkpoint, data_root, tmp_path):
    output = run([sys.executable, 'tools/test.py', str(CONFIG), str(checkpoint), '--tta',
                  '--work-dir', str(tmp_path)] + data_options(data_root), cwd=tmp_path)
    assert "type='SegTTAModel'" in output  # the dumped config
    assert 0 <= miou(output) <= 100


@cpu_only
def test_dist_train_two_cpu_processes_with_amp(data_root, tmp_path):
    output = run(['bash', 'tools/dist_train.sh', str(CONFIG), '2', '--amp',
                  '--work-dir', str(tmp_path)] + data_options(data_root) +
                 ['train_cfg.max_iters=2', 'train_cfg.val_interval=2'],
                 cwd=tmp_path, PORT=str(free_port()))
    for rank in (0, 1):
        assert f'gloo process group initialised, rank {rank} of 2' in output
    assert 'Distributed training: True' in output
    assert 'BFloat16OptimWrapper' in output
    assert re.search(r'Iter\(val\) \[1/1\].*mIoU', output)  # 2 images on 2 ranks
    assert (tmp_path / 'iter_2.pth').is_file()
