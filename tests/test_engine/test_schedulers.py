"""WarmupPolyLR against an independent computation of the released (mmcv 1.x) schedule.

The released rule, per parameter group with base lr ``b``, at iteration ``t`` (0-based)::

    lr(t) = w(t) * ((b - min_lr) * (1 - t / T) ** 0.9 + min_lr)
    w(t)  = 1 - (1 - t / 1500) * (1 - 1e-6)   for t < 1500, else 1

The schedulers are built from the configs' own ``optim_wrapper`` and ``param_scheduler`` and
stepped as mmengine's ``ParamSchedulerHook`` steps them (once at construction, then after each
iteration), over every iteration of the 80k schedule.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS
from torch import nn

import denseclip  # noqa: F401  (registers WarmupPolyLR)

CONFIGS = Path(__file__).resolve().parents[2] / 'configs'
PAPER_CONFIGS = [
    'denseclip/denseclip_r50_fpn_8xb4-80k_ade20k-512x512.py',
    'denseclip/denseclip_r101_fpn_8xb4-80k_ade20k-512x512.py',
    'denseclip/denseclip_vit-b_fpn_8xb4-80k_ade20k-640x640.py',
]
# One parameter of each kind the DenseCLIP models have, named as in the models: the backbone
# (its norms included) gets lr_mult 0.1, everything else the base lr.
PARAMETER_NAMES = [
    'backbone.layer1.0.conv1.weight', 'backbone.layer1.0.bn1.weight',
    'backbone.transformer.resblocks.0.ln_1.weight', 'contexts', 'gamma',
    'context_decoder.decoder.0.norm1.weight', 'neck.lateral_convs.0.conv.weight',
    'decode_head.conv_seg.weight',
]


def released_lr(base: float, t: np.ndarray, *, max_iters: int, warmup_iters: int = 1500,
                warmup_ratio: float = 1e-6, min_lr: float = 1e-6,
                power: float = 0.9) -> np.ndarray:
    """mmcv 1.x: ``PolyLrUpdaterHook`` with a linear warm-up, written from its definition."""
    poly = (base - min_lr) * (1.0 - t / max_iters) ** power + min_lr
    k = (1.0 - t / warmup_iters) * (1.0 - warmup_ratio)
    return np.where(t < warmup_iters, poly * (1.0 - k), poly)


class Named(nn.Module):
    """A module with one scalar parameter under each of ``names``."""

    def __init__(self, names: list[str]):
        super().__init__()
        for name in names:
            *path, leaf = name.split('.')
            module = self
            for part in path:
                if not hasattr(module, part):
                    module.add_module(part, nn.Module())
                module = getattr(module, part)
            module.register_parameter(leaf, nn.Parameter(torch.zeros(1)))


def stepped_lrs(optim_wrapper_cfg, scheduler_cfgs, max_iters: int) -> tuple[np.ndarray, list]:
    """``[iterations, groups]`` lrs in effect at each iteration, stepped as the runner does."""
    model = Named(PARAMETER_NAMES)
    optim_wrapper = build_optim_wrapper(model, optim_wrapper_cfg)
    schedulers = [PARAM_SCHEDULERS.build(cfg, default_args=dict(optimizer=optim_wrapper))
                  for cfg in scheduler_cfgs]
    groups = optim_wrapper.optimizer.param_groups
    lrs = np.empty((max_iters, len(groups)))
    for t in range(max_iters):
        lrs[t] = [group['lr'] for group in groups]
        optim_wrapper.step()  # no gradients: a no-op that keeps mmengine's step-order check quiet
        for scheduler in schedulers:
            scheduler.step()
    return lrs, [group['initial_lr'] for group in groups]


def max_relative_error(config: Config, scheduler_cfgs) -> tuple[float, list[float]]:
    max_iters = config.train_cfg.max_iters
    lrs, bases = stepped_lrs(config.optim_wrapper, scheduler_cfgs, max_iters)
    t = np.arange(max_iters, dtype=np.float64)
    errors = [float(np.max(np.abs(lrs[:, g] / released_lr(base, t, max_iters=max_iters) - 1)))
              for g, base in enumerate(bases)]
    return max(errors), bases


@pytest.mark.parametrize('path', PAPER_CONFIGS)
def test_paper_configs_follow_the_released_schedule_at_every_iteration(path):
    config = Config.fromfile(str(CONFIGS / path))
    assert config.train_cfg.max_iters == 80000 and config.warmup_iters == 1500
    error, bases = max_relative_error(config, config.param_scheduler)
    assert sorted(set(bases)) == pytest.approx([1e-5, 1e-4])  # backbone and the rest
    assert error <= 1e-10


def test_mmengine_chain_is_not_the_released_schedule():
    """The chain this replaces (LinearLR + PolyLR) misses by more than 1 %: the harness sees it."""
    config = Config.fromfile(str(CONFIGS / PAPER_CONFIGS[0]))
    chain = [dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
             dict(type='PolyLR', power=0.9, eta_min=1e-6, by_epoch=False, begin=0, end=80000)]
    error, _ = max_relative_error(config, chain)
    assert error > 0.01


def test_closed_form_values():
    model = Named(['backbone.w', 'head.w'])
    optim_wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type='SGD', lr=1.0),
        paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.5)})))
    scheduler = PARAM_SCHEDULERS.build(
        dict(type='WarmupPolyLR', power=1.0, eta_min=0.0, warmup_iters=2, warmup_ratio=0.5,
             end=4), default_args=dict(optimizer=optim_wrapper))
    seen = []
    for _ in range(4):
        seen.append([group['lr'] for group in optim_wrapper.optimizer.param_groups])
        optim_wrapper.step()
        scheduler.step()
    # t=0: w=0.5, poly=1; t=1: w=0.75, poly=0.75; t=2: w=1, poly=0.5; t=3: poly=0.25
    head = [0.5, 0.5625, 0.5, 0.25]
    np.testing.assert_allclose(seen, [[0.5 * h, h] for h in head], rtol=1e-15)


@pytest.mark.parametrize('kwargs, key', [(dict(warmup_iters=20, end=10), 'warmup_iters'),
                                         (dict(warmup_ratio=0.0, warmup_iters=2, end=10), 'warmup_ratio')])
def test_bad_arguments_name_the_key(kwargs, key):
    optim_wrapper = build_optim_wrapper(Named(['w']), dict(optimizer=dict(type='SGD', lr=1.0)))
    with pytest.raises(ValueError, match=key):
        PARAM_SCHEDULERS.build(dict(type='WarmupPolyLR', **kwargs),
                               default_args=dict(optimizer=optim_wrapper))


class RecordLR(Hook):
    def __init__(self):
        self.lrs = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.lrs.append([group['lr'] for group in runner.optim_wrapper.optimizer.param_groups])


def test_runner_applies_it_per_group_and_resumes(tmp_path, make_runner):
    """A real training run: each iteration uses lr(t) in every group, also after a resume."""
    optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01),
                         paramwise_cfg=dict(custom_keys={'linear.bias': dict(lr_mult=0.1)}))
    schedule = [dict(type='WarmupPolyLR', power=0.9, eta_min=1e-4, warmup_iters=3,
                     warmup_ratio=1e-3, by_epoch=False, end=8)]
    record = RecordLR()
    make_runner(tmp_path / 'a', hooks=[record], max_iters=8, optim_wrapper=optim_wrapper,
                param_scheduler=schedule).train()
    t = np.arange(8, dtype=np.float64)
    expected = np.stack([released_lr(base, t, max_iters=8, warmup_iters=3, warmup_ratio=1e-3,
                                     min_lr=1e-4) for base in (0.01, 0.001)], axis=1)
    np.testing.assert_allclose(np.array(record.lrs)[:, [0, 1]], expected, rtol=1e-12)

    resumed = RecordLR()
    runner = make_runner(tmp_path / 'b', hooks=[resumed], max_iters=8,
                         optim_wrapper=optim_wrapper, param_scheduler=schedule)
    runner._resume = True
    runner._load_from = str(tmp_path / 'a' / 'iter_5.pth')
    runner.train()
    np.testing.assert_allclose(np.array(resumed.lrs)[:, [0, 1]], expected[5:], rtol=1e-12)


def test_max_iters_scales_the_whole_schedule():
    """``tools/train.py --max-iters``: the paper's recipe as a 200-iteration run, and the
    quickstart's two-part schedule as a 4-iteration one (its warm-up becomes empty)."""
    from mmengine.config import Config

    from denseclip.engine.schedulers import scale_schedule
    cfg = Config.fromfile(str(CONFIGS / 'denseclip/denseclip_r50_fpn_8xb4-80k_ade20k-512x512.py'))
    assert scale_schedule(cfg, 200) == [
        'param_scheduler[0].end: 80000 -> 200', 'param_scheduler[0].warmup_iters: 1500 -> 4',
        'train_cfg.max_iters: 80000 -> 200', 'train_cfg.val_interval: 8000 -> 20',
        'default_hooks.checkpoint.interval: 8000 -> 20', 'default_hooks.logger.interval: 50 -> 1']
    quick = Config.fromfile(
        str(CONFIGS / 'quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'))
    changes = scale_schedule(quick, 4)
    assert 'param_scheduler[0] (LinearLR): dropped, shorter than one iteration' in changes
    assert [(s['type'], s['begin'], s['end']) for s in quick.param_scheduler] == [
        ('PolyLR', 0, 4)]
    accumulated = Config.fromfile(
        str(CONFIGS / 'denseclip/denseclip_r50_fpn_1xb4x8-80k_ade20k-512x512.py'))
    with pytest.raises(ValueError, match='gradient-accumulation'):
        scale_schedule(accumulated, 100)
    with pytest.raises(ValueError, match='--max-iters 0: expected an integer >= 1'):
        scale_schedule(cfg, 0)
