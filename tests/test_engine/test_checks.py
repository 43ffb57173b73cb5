"""Config checks made once by prepare_config for every entry point: numbers, keywords, folders."""
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from denseclip.engine.checks import (ConfigError, accepted_arguments, check_keywords,
                                     check_numbers, check_output_file, check_writable)
from denseclip.engine.config import prepare_config

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
CONFIGS = sorted(path for path in (ROOT / 'configs').rglob('*.py') if '_base_' not in path.parts)


@pytest.mark.parametrize('config', CONFIGS, ids=lambda path: path.name)
def test_every_config_of_the_repository_passes(config):
    cfg = Config.fromfile(config)
    check_numbers(cfg)
    check_keywords(cfg)


@pytest.mark.parametrize('option, message', [
    ({'train_dataloader.batch_size': 0}, 'train_dataloader.batch_size=0: expected an integer'),
    ({'val_dataloader.num_workers': -1}, 'val_dataloader.num_workers=-1'),
    ({'train_cfg.max_iters': 0}, 'train_cfg.max_iters=0'),
    ({'train_cfg.val_interval': 2.5}, 'train_cfg.val_interval=2.5'),
    ({'default_hooks.logger.interval': 0}, 'default_hooks.logger.interval=0'),
    ({'default_hooks.checkpoint.interval': 0}, 'default_hooks.checkpoint.interval=0'),
    ({'randomness.seed': -3}, 'randomness.seed=-3'),
    ({'randomness.seed': '0'}, "randomness.seed='0'"),
    ({'optim_wrapper.optimizer.lr': float('nan')}, 'optim_wrapper.optimizer.lr=nan'),
    ({'train_dataloader.batch_size': True}, 'train_dataloader.batch_size=True'),
])
def test_numbers_out_of_range_name_their_key(option, message):
    with pytest.raises(ConfigError, match='^' + message.replace('.', r'\.').replace(
            '(', r'\(').replace('[', r'\[')):
        prepare_config(QUICKSTART, option, device='cpu')


def test_checkpoint_interval_minus_one_means_none():
    check_numbers(Config(dict(default_hooks=dict(checkpoint=dict(interval=-1)))))


@pytest.mark.parametrize('key, guess', [
    ('model.backbone.layres', "did you mean 'layers'"),
    ('model.decode_head.dropout', "did you mean 'dropout_ratio'"),
    ('model.text_encoder.context_lenght', "did you mean 'context_length'"),
    ('model.decode_head.loss_decode.loss_weigth', "did you mean 'loss_weight'"),
    ('train_dataloader.dataset.pipeline.1.reduce_zero_lable', "'reduce_zero_label'"),
    ('default_hooks.logger.intervall', "did you mean 'interval'"),
])
def test_an_unknown_argument_names_its_config_path(key, guess):
    cfg = Config.fromfile(QUICKSTART)
    cfg.merge_from_dict({key: 1})
    shown = key.replace('.1.', '[1].')  # list items as Python writes them
    with pytest.raises(ConfigError, match='^' + re.escape(shown) + ':') as err:
        check_keywords(cfg)
    assert guess in str(err.value)


def test_accepted_arguments_follow_kwargs_to_the_base_class():
    from mmseg.models.decode_heads import FPNHead
    from mmseg.models.losses import CrossEntropyLoss
    assert {'feature_strides', 'in_channels', 'channels', 'num_classes'} <= accepted_arguments(
        FPNHead)
    assert 'loss_weight' in accepted_arguments(CrossEntropyLoss)

    class Free:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
    assert accepted_arguments(Free) is None  # kwargs consumed by the class itself: unknown


def test_output_folders_are_checked_before_work(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(ConfigError, match=f"--out: cannot write to '{blocker / 'sub'}'"):
        check_writable(str(blocker / 'sub'), '--out')
    check_writable(str(tmp_path / 'new' / 'deeper'), '--out')
    assert (tmp_path / 'new' / 'deeper').is_dir() and not list((tmp_path / 'new').rglob('.*'))
    with pytest.raises(ConfigError, match='is a folder'):
        check_output_file(str(tmp_path), '--out')
    with pytest.raises(ConfigError, match='work_dir'):
        prepare_config(QUICKSTART, work_dir=str(blocker / 'w'))


@pytest.mark.parametrize('option, message', [
    ({'trian_cfg.max_iters': 3}, "--cfg-options trian_cfg.max_iters: the config has no key "
                                 "'trian_cfg' and the runner reads none; did you mean 'train_cfg'"),
    ({'train_dataloader.batchsize': 3}, "train_dataloader.batchsize: a data loader takes no "
                                        "argument 'batchsize'; did you mean 'batch_size'"),
])
def test_options_that_nothing_would_read_are_refused(option, message):
    with pytest.raises(ConfigError, match='^' + re.escape(message)):
        prepare_config(QUICKSTART, option, device='cpu')
    prepare_config(QUICKSTART, {'work_dir': 'w', 'randomness.seed': 3}, device='cpu')


def test_devices_and_config_files_are_checked_first(tmp_path):
    from denseclip.engine.device import check_device
    check_device('cpu')
    with pytest.raises(ValueError, match="--device 'gpu' is not a device name"):
        prepare_config(QUICKSTART, device='gpu')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='--device cuda:0: this machine has no CUDA device'):
            prepare_config(QUICKSTART, device='cuda:0')
    with pytest.raises(FileNotFoundError, match=f"config file '{tmp_path}' is a folder"):
        prepare_config(tmp_path)
    with pytest.raises(FileNotFoundError, match="config file 'nope.py' does not exist"):
        prepare_config('nope.py')
