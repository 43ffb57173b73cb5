"""A toy mmengine training run (a 2 -> 1 linear model, SGD) for the hook tests.

``make_runner(work_dir, hooks=[...], nan_at={3}, max_iters=5)`` builds a Runner that saves a
checkpoint every iteration with :class:`~denseclip.engine.AtomicCheckpointHook`; the model's
``loss_bad`` term is NaN at the (1-based) iterations in ``nan_at``.
"""
import itertools
from collections.abc import Callable

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

import denseclip  # noqa: F401  (registers the hooks)
from denseclip.engine import AtomicCheckpointHook

_names = itertools.count()


class ToyModel(BaseModel):
    def __init__(self, nan_at=()):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.nan_at = set(nan_at)
        self.calls = 0

    def forward(self, inputs, data_samples=None, mode='tensor'):
        outputs = self.linear(torch.stack(inputs))
        if mode != 'loss':
            return outputs
        self.calls += 1
        scale = float('nan') if self.calls in self.nan_at else 0.0
        return dict(loss_main=(outputs ** 2).mean(), loss_bad=outputs.mean() * scale)


class ToyDataset(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict:
        return dict(inputs=torch.tensor([float(index), 1.0]))


@pytest.fixture
def make_runner() -> Callable[..., Runner]:
    def build(work_dir, hooks=(), nan_at=(), max_iters: int = 5, max_keep_ckpts: int = -1,
              checkpoint_hook=None, optim_wrapper=None, param_scheduler=None) -> Runner:
        torch.manual_seed(0)
        return Runner(
            model=ToyModel(nan_at),
            work_dir=str(work_dir),
            experiment_name=f'toy_{next(_names)}',
            train_dataloader=dict(dataset=ToyDataset(), batch_size=2,
                                  sampler=dict(type='InfiniteSampler', shuffle=False),
                                  collate_fn=dict(type='pseudo_collate')),
            optim_wrapper=optim_wrapper or dict(optimizer=dict(type='SGD', lr=0.01)),
            param_scheduler=param_scheduler,
            train_cfg=dict(by_epoch=False, max_iters=max_iters),
            default_hooks=dict(
                logger=dict(type='LoggerHook', interval=1),
                checkpoint=checkpoint_hook or AtomicCheckpointHook(
                    interval=1, by_epoch=False, max_keep_ckpts=max_keep_ckpts)),
            custom_hooks=list(hooks),
            default_scope='mmseg',
            randomness=dict(seed=0))
    return build
