"""``prepare_config``: the one config preparation of every entry point (the tools and
``denseclip.apis``), step by step, on the quickstart config and the tiny FCN of tests/data.

The entry points themselves run in tests/test_tools and tests/test_apis.
"""
import os.path as osp
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import checkpoint as mmengine_checkpoint
from torch import nn

from denseclip.engine.config import build_segmentor, fill_class_names, prepare_config

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
FCN = ROOT / 'tests/data/configs/fcn_r18-w8_1xb2-4_ade20k-32x32.py'
cpu_only = pytest.mark.skipif(
    torch.cuda.is_available(), reason='checks the fallbacks for machines without CUDA')


def norm_types(cfg) -> set:
    """Every ``type`` of a ``norm_cfg`` in ``cfg``."""
    found = set()
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if key == 'norm_cfg' and isinstance(value, dict):
                found.add(value['type'])
            found |= norm_types(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            found |= norm_types(value)
    return found


def fit_hooks(cfg) -> list:
    return [hook for hook in cfg.custom_hooks if hook['type'] == 'CheckpointFitHook']


def test_class_names_come_from_the_dataset_metainfo():
    cfg = prepare_config(QUICKSTART, device='cpu')
    assert cfg.model.class_names == list(cfg.train_dataloader.dataset.metainfo['classes'])
    named = prepare_config(QUICKSTART, {'model.class_names': ['wall', 'sky']}, device='cpu')
    assert named.model.class_names == ['wall', 'sky']  # given names are kept


def test_fill_class_names_needs_a_dataloader_or_names():
    cfg = Config(dict(model=dict(type='DenseCLIP', class_names=None)))
    with pytest.raises(ValueError, match='no dataloader to take them from'):
        fill_class_names(cfg)
    plain = Config(dict(model=dict(type='EncoderDecoder')))
    assert fill_class_names(plain).model == dict(type='EncoderDecoder')  # no class_names key


def test_a_config_object_is_prepared_in_place_and_options_override_the_launcher():
    cfg = Config.fromfile(str(QUICKSTART))
    prepared = prepare_config(cfg, {'launcher': 'slurm'}, launcher='pytorch', device='cpu')
    assert prepared is cfg
    assert cfg.launcher == 'slurm'  # --cfg-options are merged after --launcher


def test_checkpoints_are_read_safely_and_must_fit():
    cfg = prepare_config(FCN, device='cpu')
    loader = mmengine_checkpoint.CheckpointLoader._get_checkpoint_loader('/some/iter_1.pth')
    assert loader.__name__ == 'load_from_local_weights_only'
    assert fit_hooks(cfg) == [dict(type='CheckpointFitHook')]
    cfg = prepare_config(FCN, {'custom_hooks': []}, partial_load=True, device='cpu')
    assert fit_hooks(cfg) == [dict(type='CheckpointFitHook', partial=True)]


def test_tta_wraps_the_prepared_model_and_the_checked_test_dataset():
    cfg = prepare_config(QUICKSTART, tta=True, check_data=True, device='cpu')
    dataset = cfg.test_dataloader.dataset
    assert dataset.type == 'CheckedDataset' and dataset.cfg_key == 'test_dataloader.dataset'
    assert dataset.dataset.pipeline == cfg.tta_pipeline
    assert cfg.model.type == 'SegTTAModel'
    assert cfg.model.module.class_names == list(dataset.dataset.metainfo['classes'])
    assert 'SyncBN' not in norm_types(cfg.model)


def test_check_data_wraps_every_dataset_and_checks_the_class_names():
    cfg = prepare_config(QUICKSTART, check_data=True, device='cpu')
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[key].dataset.type == 'CheckedDataset', key
    assert prepare_config(QUICKSTART, device='cpu').train_dataloader.dataset.type != \
        'CheckedDataset'
    with pytest.raises(ValueError, match='model.class_names has 2 names but'):
        prepare_config(QUICKSTART, {'model.class_names': ['wall', 'sky']}, check_data=True,
                       device='cpu')


def test_a_model_built_in_this_process_has_no_sync_bn():
    cfg = Config.fromfile(str(FCN))
    assert 'SyncBN' in norm_types(cfg.model)
    cfg = prepare_config(cfg, device='cpu')
    assert 'SyncBN' not in norm_types(cfg.model)
    model = build_segmentor(cfg)
    assert not model.training
    assert not any(isinstance(module, nn.SyncBatchNorm) for module in model.modules())


@cpu_only
def test_the_runner_config_on_a_cpu_with_amp():
    cfg = prepare_config(FCN, {'optim_wrapper.type': 'OptimWrapper'}, launcher='none', amp=True)
    assert 'SyncBN' not in norm_types(cfg.model)
    assert cfg.optim_wrapper.type == 'BFloat16OptimWrapper'
    assert cfg.work_dir == osp.join('./work_dirs', FCN.stem)  # no --work-dir, none in the config


def test_the_work_dir_of_a_runner_config():
    assert prepare_config(FCN, work_dir='runs/a').work_dir == 'runs/a'
    assert prepare_config(FCN, {'work_dir': 'runs/b'}).work_dir == 'runs/b'
    assert prepare_config(FCN, {'work_dir': 'runs/b'}, work_dir='runs/a').work_dir == 'runs/a'
    assert 'work_dir' not in prepare_config(FCN, device='cpu')  # a model outside the runner
