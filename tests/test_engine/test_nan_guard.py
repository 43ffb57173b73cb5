"""A non-finite loss stops training (or skips the step) before it reaches the weights."""
import os

import pytest
import torch
from mmengine.hooks import Hook

from denseclip.engine import NaNGuardHook, NonFiniteLossError, weights_only_load
from denseclip.engine.hooks.seed_hook import iteration_seeds


class RecordWeights(Hook):
    def __init__(self):
        self.weights = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.weights[runner.iter + 1] = runner.model.linear.weight.detach().clone()


def test_stop_names_the_iteration_and_the_term(tmp_path, make_runner):
    runner = make_runner(tmp_path, hooks=[NaNGuardHook(action='stop')], nan_at={3})
    with pytest.raises(NonFiniteLossError,
                       match=r'non-finite loss at iteration 3 \(rank 0\): loss_bad=nan\. '
                             r'Training stopped before the optimiser step'):
        runner.train()
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith('.pth')) == [
        'iter_1.pth', 'iter_2.pth']
    saved = weights_only_load(str(tmp_path / 'iter_2.pth'))['state_dict']['linear.weight']
    weight = runner.model.linear.weight.detach()
    assert torch.isfinite(weight).all()
    torch.testing.assert_close(weight, saved, rtol=0, atol=0)  # iteration 3 did not step


def test_skip_drops_the_step_and_goes_on(tmp_path, make_runner):
    guard, record = NaNGuardHook(action='skip'), RecordWeights()
    runner = make_runner(tmp_path, hooks=[guard, record], nan_at={3})
    runner.train()
    assert guard.skipped == 1
    torch.testing.assert_close(record.weights[3], record.weights[2], rtol=0, atol=0)
    assert not torch.equal(record.weights[4], record.weights[3])  # later steps are taken
    assert all(torch.isfinite(weight).all() for weight in record.weights.values())
    assert (tmp_path / 'iter_5.pth').is_file()


def test_skip_gives_up_after_consecutive_failures(tmp_path, make_runner):
    runner = make_runner(tmp_path, hooks=[NaNGuardHook(action='skip', max_consecutive_skips=2)],
                         nan_at={2, 3, 4, 5})
    with pytest.raises(NonFiniteLossError, match=r'iteration 3 .*2 iterations in a row'):
        runner.train()


def test_bad_arguments():
    with pytest.raises(ValueError, match="action must be one of"):
        NaNGuardHook(action='ignore')
    with pytest.raises(ValueError, match='max_consecutive_skips'):
        NaNGuardHook(action='skip', max_consecutive_skips=0)


def test_iteration_seeds_depend_on_seed_iteration_and_rank_only():
    assert iteration_seeds(7, 3, 0) == iteration_seeds(7, 3, 0)
    seeds = {iteration_seeds(seed, it, rank) for seed in (0, 7) for it in (0, 1, 2)
             for rank in (0, 1)}
    assert len(seeds) == 12
