"""tools/convert_checkpoint.py: CLIP archives -> plain weights, released DenseCLIP (mmseg 0.x)
checkpoints -> this project's format. Every conversion must give identical outputs.

A tiny CLIP is written as a TorchScript archive like OpenAI's (its tensors at CLIP's keys plus
the int64 metadata scalars); a tiny quickstart DenseCLIP is saved the way mmseg 0.x saved
checkpoints (meta with CLASSES/PALETTE/config, state_dict, optimizer).
"""
import datetime
import os
import runpy
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from safetensors.torch import load_file
from torch import nn

from denseclip.apis import init_model
from denseclip.clip import CLIP, CheckpointError, check_fit, load, tokenize
from denseclip.clip.convert import (convert_clip_file, convert_denseclip, convert_denseclip_file,
                                    read_released)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
TINY_CLIP = dict(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=8,
                 vision_patch_size=None, context_length=77, vocab_size=49408,
                 transformer_width=64, transformer_heads=1, transformer_layers=1)  # 64 per head
METADATA = dict(input_resolution=64, context_length=77, vocab_size=49408)


pytestmark = pytest.mark.usefixtures('single_thread')  # tests/conftest.py


def perturb_(module: nn.Module, seed: int = 0) -> nn.Module:
    """No tensor keeps its initial value (a key silently not loaded would show)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():
            if tensor.is_floating_point() and 'running_var' not in name:
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator))
    return module


class ArchiveLike(nn.Module):
    """CLIP's modules and parameters at CLIP's keys plus OpenAI's int64 metadata buffers."""

    def __init__(self, model: CLIP):
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, parameter in model.named_parameters(recurse=False):
            self.register_parameter(name, parameter)
        for name, value in METADATA.items():
            self.register_buffer(name, torch.tensor(value))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.ln_final(self.token_embedding(text)) @ self.text_projection


def run_tool(*args: str) -> None:
    argv = sys.argv
    sys.argv = ['tools/convert_checkpoint.py', *args]
    try:
        runpy.run_path(str(ROOT / 'tools/convert_checkpoint.py'), run_name='__main__')
    finally:
        sys.argv = argv


# ------------------------------------------------------------------------------ CLIP
@pytest.fixture(scope='module')
def clip_archive(tmp_path_factory) -> tuple[CLIP, Path]:
    torch.manual_seed(0)
    model = perturb_(CLIP(**TINY_CLIP)).eval()
    path = tmp_path_factory.mktemp('clip') / 'RN-tiny.pt'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.jit.trace(ArchiveLike(model), tokenize(['a cat'])).save(str(path))
    return model, path


def clip_outputs(model: CLIP) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(1)
    with torch.no_grad():
        return (model.encode_image(torch.randn(2, 3, 64, 64)),
                model.encode_text(tokenize(['a photo of a cat', 'a dog'])))


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_clip_archive_converts_to_identical_weights(clip_archive, suffix, tmp_path):
    model, archive = clip_archive
    out = tmp_path / f'clip{suffix}'
    report = convert_clip_file(archive, out)
    assert 'no renaming needed' in '\n'.join(report.lines())
    if suffix == '.pth':
        torch.load(out, weights_only=True)  # plain tensors only
    else:
        assert load_file(str(out))['input_resolution'].item() == 64  # archive metadata kept
    loaded = load(out)  # denseclip.clip.load reads the converted file directly
    for ours, expected in zip(clip_outputs(loaded), clip_outputs(model)):
        torch.testing.assert_close(ours, expected, rtol=0, atol=0)
    for ours, expected in zip(clip_outputs(loaded), clip_outputs(load(archive))):
        torch.testing.assert_close(ours, expected, rtol=0, atol=0)


def test_clip_tool(clip_archive, tmp_path, capsys):
    out = tmp_path / 'clip.safetensors'
    run_tool('clip', str(clip_archive[1]), str(out))
    output = capsys.readouterr().out
    assert 'identical keys and values' in output and out.is_file()


def test_clip_conversion_refuses_other_weights(tmp_path):
    path = tmp_path / 'not_clip.pth'
    torch.save({'weight': torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match='not a CLIP state dict'):
        convert_clip_file(path, tmp_path / 'out.pth')


# ------------------------------------------------------------------------------ DenseCLIP
@pytest.fixture(scope='module')
def denseclip_model() -> nn.Module:
    torch.manual_seed(0)
    return perturb_(init_model(CONFIG))


def released_style(model: nn.Module, prefix: str = '') -> dict:
    """A checkpoint as mmseg 0.x / mmcv 1.x saved it, numpy palette included."""
    cfg = Config.fromfile(CONFIG)
    metainfo = cfg.train_dataloader.dataset.metainfo
    state_dict = {prefix + key: value.clone() for key, value in model.state_dict().items()}
    return dict(
        meta=dict(mmseg_version='0.20.2', mmcv_version='1.4.0', iter=80000, epoch=1,
                  config='model = dict(type="DenseCLIP")', CLASSES=tuple(metainfo['classes']),
                  PALETTE=np.array(metainfo['palette'], dtype=np.uint8),
                  hook_msgs=dict(last_ckpt='work_dirs/iter_80000.pth')),
        state_dict=state_dict,
        optimizer=dict(state={0: dict(step=torch.tensor(3.0), exp_avg=torch.zeros(2))},
                       param_groups=[dict(lr=1e-4, params=[0])]))


def logits(model: nn.Module) -> torch.Tensor:
    torch.manual_seed(2)
    inputs = torch.randn(1, 3, 64, 64)
    metas = [dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64))]
    with torch.no_grad():
        return model.encode_decode(inputs, metas)


def test_released_checkpoint_converts_without_renaming(denseclip_model, tmp_path):
    src, dst = tmp_path / 'released.pth', tmp_path / 'converted.pth'
    torch.save(released_style(denseclip_model), src)
    report = convert_denseclip_file(src, dst, init_model(CONFIG), trust=True)
    text = '\n'.join(report.lines())
    assert 'no renaming needed' in text and 'optimizer (training state)' in text
    assert 'class names agree with the config (8 classes)' in text
    assert report.renamed == []
    assert 'meta: CLASSES/PALETTE -> dataset_meta' in text
    converted = torch.load(dst, weights_only=True)  # tensors and plain values only
    assert set(converted) == {'meta', 'state_dict'}
    assert converted['meta']['dataset_meta']['palette'][1] == [180, 120, 120]
    assert converted['meta']['mmseg_version'] == '0.20.2'
    loaded = init_model(CONFIG, str(dst))  # mmseg's loader: strict keys, dataset_meta
    assert loaded.dataset_meta['classes'][0] == 'wall'
    torch.testing.assert_close(logits(loaded), logits(denseclip_model.eval()), rtol=0, atol=0)


def test_wrapper_prefix_is_stripped_and_reported(denseclip_model):
    converted, report = convert_denseclip(released_style(denseclip_model, prefix='module.'))
    assert set(converted['state_dict']) == set(denseclip_model.state_dict())
    assert ('module.gamma', 'gamma') in report.renamed
    assert check_fit(denseclip_model, converted['state_dict'], 'converted').fits


def test_pickled_objects_need_trust_and_non_plain_meta_is_dropped(denseclip_model, tmp_path):
    src = tmp_path / 'released.pth'
    checkpoint = released_style(denseclip_model)
    checkpoint['meta']['hook_msgs'] = dict(best_score=np.float64(41.2),
                                           when=datetime.datetime(2022, 3, 1))  # not plain
    torch.save(checkpoint, src)
    with pytest.raises(CheckpointError, match='--trust-pickle'):
        read_released(src)
    converted, report = convert_denseclip(read_released(src, trust=True))
    assert 'meta.hook_msgs (not a plain value)' in report.dropped
    assert 'hook_msgs' not in converted['meta']


def test_checkpoint_of_another_model_is_refused(denseclip_model):
    checkpoint = released_style(denseclip_model)
    del checkpoint['state_dict']['gamma']
    checkpoint['state_dict']['extra.weight'] = torch.zeros(1)
    converted, _ = convert_denseclip(checkpoint)
    with pytest.raises(CheckpointError, match=r'converted does not fit DenseCLIP: 0 shape '
                                              r'mismatches, 1 missing and 1 unexpected keys\n'
                                              r'missing: gamma\nunexpected: extra\.weight'):
        check_fit(denseclip_model, converted['state_dict'], 'converted')


def test_denseclip_tool(denseclip_model, tmp_path, capsys):
    src, dst = tmp_path / 'released.pth', tmp_path / 'converted.pth'
    checkpoint = released_style(denseclip_model)
    checkpoint['meta']['PALETTE'] = checkpoint['meta']['PALETTE'].tolist()  # weights_only-safe
    torch.save(checkpoint, src)
    run_tool('denseclip', str(src), str(dst), '--config', str(CONFIG))
    output = capsys.readouterr().out
    assert 'no renaming needed' in output
    assert 'optimizer (training state)' in output
    assert 'no missing or unexpected keys' in output
    assert os.path.getsize(dst) < os.path.getsize(src)  # the optimizer is gone


def test_a_checkpoint_of_this_project_converts_without_trust(denseclip_model, tmp_path):
    """``iter_N.pth`` as tools/train.py writes it: the message hub's HistoryBuffer, numpy
    values in meta, and dataset_meta with mmseg's label_map (integer keys)."""
    from mmengine.logging.history_buffer import HistoryBuffer
    metainfo = Config.fromfile(CONFIG).train_dataloader.dataset.metainfo
    src, dst = tmp_path / 'iter_8.pth', tmp_path / 'converted.pth'
    torch.save(dict(
        meta=dict(iter=8, seed=np.int64(0), dataset_meta=dict(
            classes=tuple(metainfo['classes']), palette=metainfo['palette'],
            label_map={index: index for index in range(8)}, reduce_zero_label=True)),
        state_dict=denseclip_model.state_dict(),
        message_hub=dict(log_scalars={'train/loss': HistoryBuffer([1.0, 0.5], [1, 1])})), src)
    report = convert_denseclip_file(src, dst, init_model(CONFIG))
    assert 'class names agree with the config (8 classes)' in report.lines()
    assert 'message_hub (training state)' in report.dropped
    assert torch.load(dst, weights_only=True)['meta']['dataset_meta']['label_map'][7] == 7
