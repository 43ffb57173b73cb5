"""The CPU fallbacks of ``denseclip.engine.dist``, in-process: SyncBN -> BN, fp16 AMP ->
bfloat16, a gloo process group and DDP without device ids (tools/train.py and tools/test.py
go through them end to end: tests/test_tools/test_train_test_tools.py)."""
import socket

import pytest
import torch
import torch.distributed as torch_dist
from mmengine.config import Config

from denseclip.engine import adapt_cfg_to_cpu, revert_sync_bn_cfg

cpu_only = pytest.mark.skipif(
    torch.cuda.is_available(), reason='checks the fallbacks for machines without CUDA')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_revert_sync_bn_cfg():
    norm_cfg = dict(type='SyncBN', requires_grad=True)
    cfg = Config(
        dict(
            norm_cfg=norm_cfg,
            model=dict(
                backbone=dict(norm_cfg=norm_cfg, stages=[dict(norm=dict(type='MMSyncBN'))]),
                neck=dict(norm_cfg=dict(type='GN', num_groups=1)),
                heads=(dict(norm_cfg=norm_cfg), ))))
    changed = revert_sync_bn_cfg(cfg)
    assert changed == [
        'norm_cfg', 'model.backbone.norm_cfg', 'model.backbone.stages.0.norm',
        'model.heads.0.norm_cfg'
    ]
    assert cfg.model.backbone.norm_cfg == dict(type='BN', requires_grad=True)
    assert cfg.model.backbone.stages[0].norm.type == 'BN'
    assert cfg.model.neck.norm_cfg.type == 'GN'
    assert cfg.model.heads[0].norm_cfg.type == 'BN'
    assert revert_sync_bn_cfg(cfg) == []


@cpu_only
def test_adapt_cfg_to_cpu_single_process():
    cfg = Config(
        dict(
            launcher='none',
            model=dict(norm_cfg=dict(type='SyncBN')),
            sync_bn='torch',
            optim_wrapper=dict(type='AmpOptimWrapper', loss_scale='dynamic', optimizer={})))
    adapt_cfg_to_cpu(cfg)
    assert cfg.model.norm_cfg.type == 'BN'
    assert 'sync_bn' not in cfg
    assert cfg.optim_wrapper == dict(type='BFloat16OptimWrapper', optimizer={})
    assert 'model_wrapper_cfg' not in cfg


@cpu_only
def test_adapt_cfg_to_cpu_distributed(monkeypatch):
    """A one-process 'pytorch' run: gloo is initialised here and DDP gets no device ids."""
    for key, value in dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1',
                           MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(key, value)
    cfg = Config(
        dict(launcher='pytorch', model=dict(), env_cfg=dict(dist_cfg=dict(backend='nccl')),
             find_unused_parameters=True))
    try:
        adapt_cfg_to_cpu(cfg)
        assert torch_dist.is_initialized() and torch_dist.get_backend() == 'gloo'
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=True, device_ids=None)
