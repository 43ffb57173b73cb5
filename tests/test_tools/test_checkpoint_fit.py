"""A checkpoint that does not fit the model is an error, never a number that looks like a result.

Every way in is tried as a user would: ``tools/test.py`` (with and without ``--tta``),
``tools/train.py`` (``load_from`` and ``--resume``), ``tools/demo.py``,
``tools/convert_checkpoint.py``, and in-process ``init_model`` / ``DenseCLIPInferencer``. The
checkpoints are the quickstart model's, saved by the tests: as configured (8 classes), and with
150 ADE20K classes and one more ResNet block (a stand-in for a full-size ADE20K checkpoint).
The opt-in ``tools/train.py --partial-load`` loads what fits and says what it skipped.
"""
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmseg.datasets import ADE20KDataset

from torch import nn

from denseclip.apis import DenseCLIPInferencer, init_model
from denseclip.clip import CLIP, CheckpointError
from denseclip.clip import check_fit

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
#: The quickstart's classes less three: a config for another class count.
FIVE_CLASS_CONFIG = f'''_base_ = '{QUICKSTART}'
metainfo = dict(classes=('wall', 'building', 'sky', 'floor', 'tree'),
                palette=[[120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50],
                         [4, 200, 3]])
train_dataloader = dict(dataset=dict(metainfo=metainfo))
val_dataloader = dict(dataset=dict(metainfo=metainfo))
test_dataloader = val_dataloader
'''
#: The keys that the class count shapes: the score-map channels of the neck and the classifier.
CLASS_KEYS = ('neck.lateral_convs.3.conv.weight', 'decode_head.conv_seg.weight',
              'decode_head.conv_seg.bias')
FIX = 'Use the config the checkpoint was trained with. To fine-tune from it'


pytestmark = pytest.mark.usefixtures('single_thread')  # tests/conftest.py


def save_quickstart(path: Path, **cfg_options) -> Path:
    """The quickstart model (random weights, ``cfg_options`` applied) saved as the runner would."""
    torch.manual_seed(0)
    model = init_model(QUICKSTART, cfg_options=cfg_options)
    meta = dict(dataset_meta=dict(classes=model.class_names))
    torch.save(dict(state_dict=model.state_dict(), meta=meta), path)
    return path


@pytest.fixture(scope='module')
def eight_classes(tmp_path_factory) -> Path:
    return save_quickstart(tmp_path_factory.mktemp('ckpt') / 'eight_classes.pth')


@pytest.fixture(scope='module')
def ade_deeper(tmp_path_factory) -> Path:
    """150 ADE20K classes and a ResNet with two blocks in stage 3 instead of one."""
    return save_quickstart(tmp_path_factory.mktemp('ckpt') / 'ade_deeper.pth',
                           **{'model.class_names': list(ADE20KDataset.METAINFO['classes']),
                              'model.backbone.layers': [1, 1, 2, 1]})


@pytest.fixture(scope='module')
def five_class_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('cfg') / 'quickstart_5_classes.py'
    path.write_text(FIVE_CLASS_CONFIG)
    return path


def assert_class_count_error(output: str, last_line: str, checkpoint: Path) -> None:
    """The message of an 8-class checkpoint on a 5-class model: counts, keys, cause, fix."""
    assert (f"checkpoint '{checkpoint}' does not fit DenseCLIP: 3 shape mismatches, 0 missing "
            'and 0 unexpected keys') in output
    assert ('shape mismatch: neck.lateral_convs.3.conv.weight: checkpoint (32, 520, 1, 1) vs '
            'model (32, 517, 1, 1), decode_head.conv_seg.weight: checkpoint (8, 32, 1, 1) vs '
            'model (5, 32, 1, 1), decode_head.conv_seg.bias: checkpoint (8,) vs model (5,)'
            ) in output
    assert last_line.startswith('likely cause: the checkpoint was trained for 8 classes and the '
                                'model has 5 (model.class_names, or the classes of the '
                                "config's dataset). " + FIX)
    assert last_line.endswith('train with tools/train.py --partial-load (the weights that do '
                              'not fit keep their initial values).')
    assert 'size mismatch' not in output  # mmengine's log lines: the weights were not loaded


# ------------------------------------------------------------------------------ tools/test.py
def test_test_tool_refuses_a_checkpoint_of_another_class_count(
        run_tool, five_class_config, eight_classes, data_options, tmp_path):
    proc = run_tool('test.py', five_class_config, eight_classes, '--work-dir', tmp_path,
                    *data_options, cwd=tmp_path)
    assert proc.returncode != 0
    assert_class_count_error(proc.output, proc.last_line, eight_classes)
    assert 'Iter(test)' not in proc.output  # no metrics


def test_test_tool_with_tta_refuses_a_150_class_checkpoint(run_tool, ade_deeper, data_options,
                                                           tmp_path):
    proc = run_tool('test.py', QUICKSTART, ade_deeper, '--tta', '--work-dir', tmp_path,
                    *data_options, cwd=tmp_path)
    assert proc.returncode != 0
    assert (f"checkpoint '{ade_deeper}' does not fit DenseCLIP: 3 shape mismatches, 0 missing "
            'and 18 unexpected keys') in proc.output
    assert 'decode_head.conv_seg.weight: checkpoint (150, 32, 1, 1) vs model (8, 32, 1, 1)' in \
        proc.output
    assert ('unexpected: backbone.layer3.1.conv1.weight, backbone.layer3.1.bn1.weight, '
            'backbone.layer3.1.bn1.bias, backbone.layer3.1.bn1.running_mean, '
            'backbone.layer3.1.bn1.running_var, ... (13 more)') in proc.output
    assert proc.last_line.startswith(
        'likely cause: the checkpoint was trained for 150 classes and the model has 8 '
        "(model.class_names, or the classes of the config's dataset); another architecture "
        '(type, depth or widths) of backbone (18 keys). ' + FIX)
    assert 'Iter(test)' not in proc.output and 'size mismatch' not in proc.output


# ------------------------------------------------------------------------------ tools/train.py
def train_options(data_options: list, checkpoint: Path) -> list:
    """One iteration of batch 2 at lr 0 (so the loaded parameters are saved as loaded)."""
    return [*data_options, f'load_from={checkpoint}', 'train_cfg.max_iters=1',
            'train_dataloader.batch_size=2', 'optim_wrapper.optimizer.lr=0']


def test_train_load_from_must_fit(run_tool, five_class_config, eight_classes, data_options,
                                  tmp_path):
    proc = run_tool('train.py', five_class_config, '--work-dir', tmp_path,
                    *train_options(data_options, eight_classes), cwd=tmp_path)
    assert proc.returncode != 0
    assert_class_count_error(proc.output, proc.last_line, eight_classes)
    assert 'Iter(train)' not in proc.output


def test_a_plain_runner_built_from_the_config_refuses_it_too(five_class_config, eight_classes,
                                                             tmp_path):
    """mmseg's own tools build ``Runner.from_cfg(cfg)`` without this project's additions: the
    configs' ``custom_hooks`` (default_runtime.py) make its ``load_from`` strict as well."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from denseclip.engine.config import fill_class_names
    cfg = fill_class_names(Config.fromfile(str(five_class_config)))
    cfg.work_dir, cfg.load_from = str(tmp_path), str(eight_classes)
    runner = Runner.from_cfg(cfg)
    before = runner.model.decode_head.conv_seg.weight.clone()
    with pytest.raises(CheckpointError, match='trained for 8 classes and the model has 5'):
        runner.load_or_resume()
    assert torch.equal(runner.model.decode_head.conv_seg.weight, before)


def test_train_partial_load_is_opt_in_and_says_what_it_skipped(
        run_tool, five_class_config, eight_classes, data_options, tmp_path):
    proc = run_tool('train.py', five_class_config, '--work-dir', tmp_path, '--partial-load',
                    *train_options(data_options, eight_classes), cwd=tmp_path)
    assert proc.returncode == 0, proc.output[-4000:]
    summary = re.search(r'WARNING - (partial load .*)', proc.output)
    assert summary, proc.output[-4000:]
    source = torch.load(eight_classes, weights_only=True)['state_dict']
    assert summary.group(1) == (
        f"partial load of checkpoint '{eight_classes}' into DenseCLIP: {len(source) - 3} tensors "
        'loaded; 3 of another shape or kind and 0 missing keep their initial weights '
        f'({", ".join(CLASS_KEYS)}); 0 unexpected ignored')
    assert 'size mismatch' not in proc.output and 'Iter(train) [1/1]' in proc.output

    trained = torch.load(tmp_path / 'iter_1.pth', weights_only=False)['state_dict']
    assert trained['decode_head.conv_seg.weight'].shape == (5, 32, 1, 1)
    loaded = [key for key in source if key not in CLASS_KEYS and 'running_' not in key
              and 'num_batches_tracked' not in key]  # BN statistics move in one iteration
    assert loaded and all(torch.equal(trained[key], source[key]) for key in loaded)


def test_train_partial_load_never_resumes(run_tool, tmp_path):
    proc = run_tool('train.py', QUICKSTART, '--partial-load', '--resume', cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.last_line.endswith('--partial-load is for fine-tuning from load_from; a resumed '
                                   'run must fit its checkpoint exactly: drop one of '
                                   '--partial-load and --resume')


def test_train_resume_must_fit(run_tool, ade_deeper, data_options, tmp_path):
    proc = run_tool('train.py', QUICKSTART, '--work-dir', tmp_path, '--resume', ade_deeper,
                    *data_options, cwd=tmp_path)
    assert proc.returncode != 0
    assert f"checkpoint '{ade_deeper}' does not fit DenseCLIP: 3 shape mismatches" in proc.output
    assert proc.last_line.startswith('likely cause: the checkpoint was trained for 150 classes')


# ------------------------------------------------------------------------------ demo, conversion
def test_demo_refuses_a_checkpoint_of_another_class_count(run_tool, five_class_config,
                                                          eight_classes, tmp_path):
    image = tmp_path / 'image.png'
    cv2.imwrite(str(image), np.full((48, 64, 3), 128, np.uint8))
    proc = run_tool('demo.py', image, five_class_config, eight_classes, '--out',
                    tmp_path / 'out.png', cwd=tmp_path)
    assert proc.returncode != 0
    assert_class_count_error(proc.output, proc.last_line, eight_classes)
    assert not (tmp_path / 'out.png').exists()


def test_conversion_refuses_a_checkpoint_of_another_model(run_tool, five_class_config,
                                                          eight_classes, tmp_path):
    proc = run_tool('convert_checkpoint.py', 'denseclip', eight_classes, tmp_path / 'out.pth',
                    '--config', five_class_config, cwd=tmp_path)
    assert proc.returncode != 0
    assert (f"checkpoint '{eight_classes}' does not fit DenseCLIP: 3 shape mismatches, 0 "
            'missing and 0 unexpected keys') in proc.output
    assert proc.last_line.startswith('likely cause: the checkpoint was trained for 8 classes')
    assert proc.last_line.endswith('Pass as --config the config of the model the checkpoint '
                                   'was trained with (the class names, backbone and crop size '
                                   'must be the same).')
    assert not (tmp_path / 'out.pth').exists()


# ------------------------------------------------------------------------------ in-process APIs
def test_init_model_and_inferencer_refuse_and_accept(five_class_config, eight_classes):
    with pytest.raises(CheckpointError, match=r'trained for 8 classes and the model has 5'):
        init_model(five_class_config, str(eight_classes))
    with pytest.raises(CheckpointError, match=rf"checkpoint '{re.escape(str(eight_classes))}' "
                                              r'does not fit DenseCLIP: 3 shape mismatches'):
        DenseCLIPInferencer(str(five_class_config), weights=str(eight_classes), device='cpu')

    model = init_model(QUICKSTART, str(eight_classes))
    source = torch.load(eight_classes, weights_only=True)['state_dict']
    assert all(torch.equal(value, source[key]) for key, value in model.state_dict().items())
    assert model.dataset_meta['classes'][0] == 'wall'
    inferencer = DenseCLIPInferencer(str(QUICKSTART), weights=str(eight_classes), device='cpu')
    assert torch.equal(inferencer.model.decode_head.conv_seg.weight,
                       source['decode_head.conv_seg.weight'])


def test_crop_size_of_the_positional_embedding_is_named(tmp_path):
    path = save_quickstart(tmp_path / 'crop128.pth', **{'model.backbone.input_resolution': 128})
    with pytest.raises(CheckpointError) as info:
        init_model(QUICKSTART, str(path))
    assert str(info.value).splitlines()[-1].startswith(
        'likely cause: its image positional embedding backbone.attnpool.positional_embedding is '
        "a 4x4 grid and the model's 2x2: the checkpoint was trained at another crop size "
        '(model.backbone.input_resolution).')


def test_clip_archive_given_as_a_checkpoint_is_named(tmp_path):
    clip = CLIP(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=8,
                vision_patch_size=None, context_length=77, vocab_size=49408,
                transformer_width=64, transformer_heads=1, transformer_layers=1)
    path = tmp_path / 'RN_tiny.pth'
    torch.save(clip.state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        init_model(QUICKSTART, str(path))
    assert str(info.value).splitlines()[-1].startswith(
        'likely cause: it shares no key with the model: it holds the weights of another model '
        '(a CLIP archive: give it as model.pretrained).')


def test_parts_absent_on_either_side_are_named():
    model = nn.ModuleDict(dict(backbone=nn.Linear(2, 2), auxiliary_head=nn.Linear(2, 3)))
    state_dict = dict(nn.ModuleDict(dict(backbone=nn.Linear(2, 2))).state_dict(),
                      **{'identity_head.weight': torch.zeros(1)})
    with pytest.raises(CheckpointError) as info:
        check_fit(model, state_dict, "checkpoint 'x.pth'", fix='Use its config.')
    assert str(info.value).splitlines() == [
        "checkpoint 'x.pth' does not fit ModuleDict: 0 shape mismatches, 2 missing and 1 "
        'unexpected keys',
        'missing: auxiliary_head.weight, auxiliary_head.bias',
        'unexpected: identity_head.weight',
        'likely cause: the checkpoint has no auxiliary_head (2 keys); the model has no '
        'identity_head (1 key). Use its config.']
    fit = check_fit(model, state_dict, "checkpoint 'x.pth'", partial=True)
    assert fit.summary("checkpoint 'x.pth'", 'ModuleDict') == (
        "partial load of checkpoint 'x.pth' into ModuleDict: 2 tensors loaded; 0 of another "
        'shape or kind and 2 missing keep their initial weights (auxiliary_head.weight, '
        'auxiliary_head.bias); 1 unexpected ignored (identity_head.weight)')
