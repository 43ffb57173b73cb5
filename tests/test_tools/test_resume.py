"""A run killed with SIGKILL and resumed with ``tools/train.py --resume`` ends with exactly the
weights, optimiser state and schedule of a run that was never interrupted.

A run of the quickstart config (6 iterations, a checkpoint and a validation every 3, 16
synthetic 64 px images) is paused by a test hook at the start of iteration 5 — after
``iter_3.pth`` was written and iteration 4 was trained — and killed there with SIGKILL. The
folder is then damaged the way killed jobs leave folders (a ``.partial`` file, a truncated
newer ``iter_4.pth``), and ``--resume`` continues the run from ``iter_3.pth`` without being
told the seed, while the reference run, never interrupted, runs alongside. With one thread per
process the CPU kernels are deterministic, so the comparison is bit-exact (tolerance 0). It
shows that resuming replays iteration 4 with the data order, augmentation and dropout draws of
the reference run (``IterationSeedHook``), and that the validation between iterations 3 and 4
of the reference run does not shift them.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from denseclip.datasets import generate_synthetic_ade20k

pytestmark = pytest.mark.slow  # tools as subprocesses: tens of seconds

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
TIMEOUT = 240  # seconds for a run; each takes ~10 s on an idle 2-core machine
#: A test hook that acts before iteration `iteration` + 1 (after its batch was loaded): it
#: marks the moment in the file `marker` and pauses for good, or sends `signum` to its own
#: process (as SLURM would before a time limit).
AT_ITER_HOOK = '''
import os, time
from mmengine.hooks import Hook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class AtIterHook(Hook):

    def __init__(self, iteration, marker=None, signum=None):
        self.iteration, self.marker, self.signum = iteration, marker, signum

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter != self.iteration:
            return
        if self.signum is not None:
            os.kill(os.getpid(), self.signum)
        else:
            open(self.marker, 'w').close()
            time.sleep(3600)
'''


def hooked_config(tmp_path: Path, name: str, **hook) -> Path:
    """The quickstart config with :data:`AT_ITER_HOOK` added."""
    (tmp_path / 'at_iter_hook.py').write_text(AT_ITER_HOOK)
    arguments = ', '.join(f'{key}={value!r}' for key, value in hook.items())
    config = tmp_path / f'{name}.py'
    config.write_text(
        f'_base_ = [{str(QUICKSTART)!r}]\n'
        "custom_imports = dict(imports=['denseclip', 'at_iter_hook'], allow_failed_imports=False)\n"
        f"custom_hooks = [dict(type='AtIterHook', {arguments})]\n")
    return config


def train(config: Path, work_dir: Path, options: list, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(cwd))
    log = open(work_dir.with_suffix('.log'), 'w')
    return subprocess.Popen(
        [sys.executable, str(ROOT / 'tools/train.py'), str(config), '--work-dir', str(work_dir),
         *options], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, work_dir: Path) -> str:
    proc.wait(timeout=TIMEOUT)
    output = work_dir.with_suffix('.log').read_text()
    assert proc.returncode == 0, output[-4000:]
    return output


def load(path: Path) -> dict:
    return torch.load(path, map_location='cpu', weights_only=False)


def assert_same_tensors(ours, theirs, what: str) -> None:
    if isinstance(ours, torch.Tensor):
        assert torch.equal(ours, theirs), what
    elif isinstance(ours, dict):
        assert ours.keys() == theirs.keys(), what
        for key in ours:
            assert_same_tensors(ours[key], theirs[key], f'{what}.{key}')
    elif isinstance(ours, (list, tuple)):
        assert len(ours) == len(theirs), what
        for index, (a, b) in enumerate(zip(ours, theirs)):
            assert_same_tensors(a, b, f'{what}[{index}]')
    else:
        assert ours == theirs, what


def test_sigkill_and_resume_matches_the_uninterrupted_run(tmp_path):
    data = generate_synthetic_ade20k(tmp_path / 'data', num_classes=8, num_train=16, num_val=4,
                                     image_size=64, seed=0)
    marker = tmp_path / 'paused'
    pausing = hooked_config(tmp_path, 'pausing', iteration=4, marker=str(marker))
    options = ['--cfg-options'] + [
        f'{split}_dataloader.dataset.data_root={data}' for split in ('train', 'val', 'test')
    ] + ['train_cfg.max_iters=6', 'train_cfg.val_interval=3',
         'default_hooks.checkpoint.interval=3', 'default_hooks.checkpoint.max_keep_ckpts=3']
    reference, resumed = tmp_path / 'reference', tmp_path / 'resumed'

    killed = train(pausing, resumed, options + ['randomness.seed=0'], tmp_path)
    deadline = time.monotonic() + TIMEOUT
    while not marker.exists():
        assert killed.poll() is None, resumed.with_suffix('.log').read_text()[-4000:]
        assert time.monotonic() < deadline, 'the run never reached iteration 5'
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=30) == -signal.SIGKILL
    assert (resumed / 'iter_3.pth').is_file() and not (resumed / 'iter_6.pth').exists()

    partial = resumed / '.iter_6.pth.4242.0badc0de.partial'
    partial.write_bytes(b'half a checkpoint')
    truncated = resumed / 'iter_4.pth'
    truncated.write_bytes((resumed / 'iter_3.pth').read_bytes()[:100_000])
    uninterrupted = train(QUICKSTART, reference, options + ['randomness.seed=0'], tmp_path)
    output = finish(train(QUICKSTART, resumed, ['--resume'] + options, tmp_path), resumed)
    assert f'skipping checkpoint {truncated}' in output
    assert f'--resume: continuing from {resumed / "iter_3.pth"}' in output
    assert 'resumed epoch: 0, iter: 3' in output
    assert f'removed {partial}' in output and not partial.exists()
    finish(uninterrupted, reference)

    ours, theirs = load(resumed / 'iter_6.pth'), load(reference / 'iter_6.pth')
    assert ours['meta']['iter'] == theirs['meta']['iter'] == 6
    assert ours['meta']['seed'] == theirs['meta']['seed'] == 0
    assert_same_tensors(ours['state_dict'], theirs['state_dict'], 'state_dict')
    assert_same_tensors(ours['optimizer'], theirs['optimizer'], 'optimizer')
    assert_same_tensors(ours['param_schedulers'], theirs['param_schedulers'], 'param_schedulers')
    assert (resumed / 'last_checkpoint').read_text() == str(resumed / 'iter_6.pth')


def test_sigterm_saves_a_checkpoint_and_resuming_from_it_matches(tmp_path):
    """SIGTERM during iteration 5 of 6: that iteration finishes, ``iter_5.pth`` is written
    (between the periodic ones at 3 and 6), the tool exits with 128 + 15 and names the resume
    command; the resumed run's ``iter_6.pth`` equals an uninterrupted run's, bit for bit."""
    data = generate_synthetic_ade20k(tmp_path / 'data', num_classes=8, num_train=16, num_val=4,
                                     image_size=64, seed=0)
    signalled = hooked_config(tmp_path, 'signalled', iteration=4, signum=int(signal.SIGTERM))
    options = ['--cfg-options'] + [
        f'{split}_dataloader.dataset.data_root={data}' for split in ('train', 'val', 'test')
    ] + ['train_cfg.max_iters=6', 'train_cfg.val_interval=3',
         'default_hooks.checkpoint.interval=3', 'default_hooks.checkpoint.max_keep_ckpts=3']
    reference, resumed = tmp_path / 'reference', tmp_path / 'resumed'
    uninterrupted = train(QUICKSTART, reference, options, tmp_path)
    stopped = train(signalled, resumed, options, tmp_path)
    assert stopped.wait(timeout=TIMEOUT) == 128 + signal.SIGTERM
    output = resumed.with_suffix('.log').read_text()
    assert 'Traceback' not in output, output[-3000:]
    assert output.strip().splitlines()[-1] == (
        f'stopped: training stopped by SIGTERM after iteration 5 of 6; saved '
        f'{resumed / "iter_5.pth"}. Continue with the same command plus --resume '
        f'(tools/train.py CONFIG --work-dir {resumed} --resume).')
    assert (resumed / 'last_checkpoint').read_text() == str(resumed / 'iter_5.pth')
    assert not (resumed / 'iter_6.pth').exists()

    output = finish(train(QUICKSTART, resumed, ['--resume'] + options, tmp_path), resumed)
    assert f'--resume: continuing from {resumed / "iter_5.pth"}' in output
    assert output.strip().splitlines()[-1].startswith('done: 6 iterations, seed 0, work dir ')
    finish(uninterrupted, reference)
    ours, theirs = load(resumed / 'iter_6.pth'), load(reference / 'iter_6.pth')
    assert_same_tensors(ours['state_dict'], theirs['state_dict'], 'state_dict')
    assert_same_tensors(ours['optimizer'], theirs['optimizer'], 'optimizer')


def test_same_seed_same_weights_with_dataloader_workers(tmp_path):
    """Two runs of the quickstart config with the config's seed and two data-loader worker
    processes give bit-identical weights; a third with ``--seed 1`` does not."""
    data = generate_synthetic_ade20k(tmp_path / 'data', num_classes=8, num_train=16, num_val=4,
                                     image_size=64, seed=0)
    options = ['--cfg-options'] + [
        f'{split}_dataloader.dataset.data_root={data}' for split in ('train', 'val', 'test')
    ] + ['train_cfg.max_iters=4', 'train_cfg.val_interval=4',
         'default_hooks.checkpoint.interval=4', 'train_dataloader.num_workers=2',
         'train_dataloader.persistent_workers=True']
    runs = {name: train(QUICKSTART, tmp_path / name, extra + options, tmp_path)
            for name, extra in (('first', []), ('second', []), ('other', ['--seed', '1']))}
    for name, proc in runs.items():
        output = finish(proc, tmp_path / name)
        seed = 1 if name == 'other' else 0
        assert output.strip().splitlines()[-1].startswith(f'done: 4 iterations, seed {seed}, ')
    first, second, other = (load(tmp_path / name / 'iter_4.pth')['state_dict']
                            for name in runs)
    assert_same_tensors(first, second, 'state_dict')
    assert not all(torch.equal(first[key], other[key]) for key in first)
