"""A distributed CPU run (gloo, 2 processes) in which a rank dies or hangs exits non-zero in
bounded time instead of waiting forever.

- ``tools/dist_train.sh`` (torchrun) training the quickstart config: rank 1 kills itself with
  SIGKILL at its second iteration (as the OOM killer or a node failure would); the elastic
  agent stops rank 0 and exits non-zero, naming rank 1 as the root cause.
- Two processes started without an agent (as ``srun`` or ``--launcher pytorch`` by hand start
  them) in a gloo group with a collective timeout, all-reducing in a loop: when rank 1 dies,
  rank 0's next collective fails at once (gloo sees the connection closed); when rank 1 hangs,
  it fails after the timeout. The processes use torch alone (start-up in a second): that the
  tools pass ``env_cfg.dist_cfg.timeout`` (1800 s by default) to ``init_process_group`` is
  checked in-process.
"""
import datetime
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
from mmengine.config import Config

from denseclip.datasets import generate_synthetic_ade20k
from denseclip.engine import adapt_cfg_to_cpu

pytestmark = pytest.mark.slow  # tools as subprocesses: tens of seconds

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
BOUND = 150  # seconds: start-up (~10 s per process on 2 busy cores) plus the failure handling
TIMEOUT = 2  # seconds a collective waits for a hanging peer
EXPECTED = dict(die='Connection', hang=f'Timed out waiting {TIMEOUT * 1000}ms')
WORKER = '''
import datetime, os, signal, sys, time
import torch
import torch.distributed as dist

fault, timeout = sys.argv[1], float(sys.argv[2])
dist.init_process_group('gloo', timeout=datetime.timedelta(seconds=timeout))
for step in range(1000):
    if dist.get_rank() == 1 and step == 3:
        if fault == 'die':
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(3600)  # hang
    dist.all_reduce(torch.ones(4))
'''
KILL_HOOK = '''
import os, signal
from mmengine.hooks import Hook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class DieHook(Hook):
    def __init__(self, rank, iteration):
        self.rank, self.iteration = rank, iteration

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.rank == self.rank and runner.iter == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_dist_train_exits_when_a_rank_dies(tmp_path):
    data = generate_synthetic_ade20k(tmp_path / 'data', num_classes=8, num_train=16, num_val=4,
                                     image_size=64, seed=0)
    (tmp_path / 'die_hook.py').write_text(KILL_HOOK)
    config = tmp_path / 'dying.py'
    config.write_text(
        f'_base_ = [{str(QUICKSTART)!r}]\n'
        "custom_imports = dict(imports=['denseclip', 'die_hook'], allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='DieHook', rank=1, iteration=1)]\n")
    options = ['--cfg-options'] + [
        f'{split}_dataloader.dataset.data_root={data}' for split in ('train', 'val', 'test')
    ] + ['train_cfg.max_iters=1000']
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable, PORT=str(free_port()),
               PYTHONPATH=str(tmp_path))
    start = time.monotonic()
    proc = subprocess.run(['bash', str(ROOT / 'tools/dist_train.sh'), str(config), '2',
                           '--work-dir', str(tmp_path / 'work')] + options, cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=BOUND)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-4000:]
    assert time.monotonic() - start < BOUND
    assert 'Root Cause' in output and 'rank      : 1' in output, output[-4000:]
    assert 'Signal 9 (SIGKILL)' in output
    assert 'Iter(train) [1000/1000]' not in output


def test_a_dead_or_hanging_peer_fails_the_collective(tmp_path):
    script = tmp_path / 'worker.py'
    script.write_text(WORKER)
    env = dict(os.environ, OMP_NUM_THREADS='1', WORLD_SIZE='2', MASTER_ADDR='127.0.0.1')
    jobs = {}
    for fault in ('die', 'hang'):  # both at once: start-up dominates
        port = str(free_port())
        jobs[fault] = [subprocess.Popen(
            [sys.executable, str(script), fault, str(TIMEOUT)], cwd=tmp_path,
            env=dict(env, RANK=str(rank), LOCAL_RANK=str(rank), MASTER_PORT=port),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    try:
        start = time.monotonic()
        for fault, (rank0, rank1) in jobs.items():
            output = rank0.communicate(timeout=BOUND)[0]
            assert rank0.returncode != 0, output[-3000:]
            assert EXPECTED[fault] in output, output[-3000:]
        assert jobs['die'][1].wait(timeout=10) == -9
        assert time.monotonic() - start < BOUND
    finally:
        for proc in jobs['die'] + jobs['hang']:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.mark.skipif(torch.cuda.is_available(), reason='mmengine initialises NCCL on GPUs')
def test_the_collective_timeout_reaches_the_process_group(monkeypatch):
    """``env_cfg.dist_cfg.timeout`` of the base runtime bounds every collective on CPUs too."""
    seen = {}
    monkeypatch.setattr(torch_dist, 'is_initialized', lambda: False)
    monkeypatch.setattr(torch_dist, 'init_process_group', lambda **kwargs: seen.update(kwargs))
    monkeypatch.setattr(torch_dist, 'get_rank', lambda: 0)
    monkeypatch.setattr(torch_dist, 'get_world_size', lambda: 2)
    for key, value in dict(RANK='0', WORLD_SIZE='2', LOCAL_RANK='0').items():
        monkeypatch.setenv(key, value)
    cfg = Config.fromfile(str(QUICKSTART))
    cfg.launcher = 'pytorch'
    adapt_cfg_to_cpu(cfg)
    assert seen['backend'] == 'gloo'
    assert seen['timeout'] == datetime.timedelta(seconds=1800)
