"""Checkpoints are complete or absent, whenever the job dies, and never hold NaN weights.

A job killed while writing is simulated by making the rename that publishes the file fail
(the bytes are on disk in the temporary file at that point); a ``.partial`` file of a job
killed without a chance to clean up is removed at the next start.
"""
import os

import pytest
import torch
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook, Hook

from denseclip.engine import (NonFiniteWeightsError, WorkDirLockHook, atomic_io, atomic_write,
                              weights_only_load)


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler in between catches it."""


def die_when_publishing(monkeypatch, name: str) -> None:
    replace = os.replace

    def fake_replace(src, dst):
        if os.path.basename(dst) == name:
            raise Killed(f'killed while publishing {dst}')
        replace(src, dst)

    monkeypatch.setattr(atomic_io.os, 'replace', fake_replace)


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / 'last_checkpoint'
    atomic_write(path, b'old')
    die_when_publishing(monkeypatch, 'last_checkpoint')
    with pytest.raises(Killed):
        atomic_write(path, b'new')
    assert path.read_bytes() == b'old'
    assert sorted(os.listdir(tmp_path)) == ['last_checkpoint']  # no temporary file left


def test_kill_while_saving_keeps_the_previous_checkpoint(tmp_path, make_runner, monkeypatch):
    """max_keep_ckpts=1: the old checkpoint is deleted only once the new one is complete."""
    runner = make_runner(tmp_path, max_keep_ckpts=1)
    die_when_publishing(monkeypatch, 'iter_3.pth')
    with pytest.raises(Killed):
        runner.train()
    files = sorted(os.listdir(tmp_path))
    assert 'iter_2.pth' in files and 'iter_3.pth' not in files
    assert not [name for name in files if name.endswith('.partial')]
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_2.pth')
    assert weights_only_load(str(tmp_path / 'iter_2.pth'))['meta']['iter'] == 2


def test_mmengine_hook_loses_every_checkpoint_in_the_same_situation(tmp_path, make_runner,
                                                                     monkeypatch):
    """Why AtomicCheckpointHook exists: mmengine deletes the old file before writing."""
    runner = make_runner(tmp_path, checkpoint_hook=CheckpointHook(
        interval=1, by_epoch=False, max_keep_ckpts=1))
    put = LocalBackend.put

    def dying_put(self, obj, filepath):
        if str(filepath).endswith('iter_3.pth'):
            put(self, obj[:len(obj) // 2], filepath)  # half written, then killed
            raise Killed
        put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', dying_put)
    with pytest.raises(Killed):
        runner.train()
    assert not (tmp_path / 'iter_2.pth').exists()
    with pytest.raises(Exception):
        weights_only_load(str(tmp_path / 'iter_3.pth'))  # the only checkpoint is corrupt


def test_partial_files_of_a_killed_job_are_removed(tmp_path, make_runner):
    partial = tmp_path / '.iter_9.pth.4242.0badc0de.partial'
    partial.write_bytes(b'half a checkpoint')
    make_runner(tmp_path, max_iters=1, hooks=[WorkDirLockHook()]).train()
    assert not partial.exists()
    assert (tmp_path / 'iter_1.pth').is_file()


def test_partial_files_stay_unless_this_run_holds_the_work_dir(tmp_path, make_runner):
    """Without the work dir's lock a live run may be writing them: they are left alone."""
    partial = tmp_path / '.iter_9.pth.4242.0badc0de.partial'
    partial.write_bytes(b'another run is writing this')
    make_runner(tmp_path, max_iters=1).train()
    assert partial.read_bytes() == b'another run is writing this'


class PoisonWeights(Hook):
    priority = 'HIGH'  # after the optimiser step, before the checkpoint hook

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == 2:
            with torch.no_grad():
                runner.model.linear.weight[0, 0] = float('nan')


def test_nan_weights_are_never_written(tmp_path, make_runner):
    runner = make_runner(tmp_path, hooks=[PoisonWeights()])
    with pytest.raises(NonFiniteWeightsError, match=r'iteration 2: 1 weight tensors hold NaN or '
                                                    r'Inf \(linear\.weight\).*iter_1\.pth'):
        runner.train()
    assert (tmp_path / 'iter_1.pth').is_file() and not (tmp_path / 'iter_2.pth').exists()
    assert (tmp_path / 'last_checkpoint').read_text().endswith('iter_1.pth')
