"""tools/train.py and tools/test.py with a ViT whose inputs are not multiples of its patch size.

A tiny ViT DenseCLIP trains on 40 x 40 crops (patch 16) and is evaluated on whole images resized
to 91 x 128: the backbone pads to the patch grid and crops its levels back, so both tools run
through and score every pixel (tests/test_models/test_clip_backbones.py checks the values).
"""
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # tools as subprocesses: tens of seconds

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
CONFIG = f"""
_base_ = ['{QUICKSTART}']
crop_size = (40, 40)  # not a multiple of patch_size 16
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
model = dict(
    data_preprocessor=dict(size=crop_size),
    score_concat_index=2,
    backbone=dict(_delete_=True, type='CLIPVisionTransformer', input_resolution=48,
                  patch_size=16, width=32, layers=4, heads=2, output_dim=64,
                  out_indices=(0, 1, 2, 3), get_embeddings=True),
    neck=dict(in_channels=[32, 32, 32, 32]))
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=2))
"""


def succeeded(proc) -> str:
    assert proc.returncode == 0, proc.output[-4000:]
    return proc.output


def test_train_and_test_a_vit_off_the_patch_grid(run_tool, tmp_path):
    data = tmp_path / 'data'
    succeeded(run_tool('make_synthetic_data.py', '--root', data, '--num-train', '4',
                       '--num-val', '2', '--size', '40', '56', cwd=tmp_path))
    config = tmp_path / 'vit_off_grid.py'
    config.write_text(CONFIG)
    options = ['--cfg-options'] + [
        f'{split}_dataloader.dataset.data_root={data}/ADEChallengeData2016'
        for split in ('train', 'val', 'test')]
    work_dir = tmp_path / 'work'
    output = succeeded(run_tool('train.py', config, '--work-dir', work_dir, *options,
                                cwd=tmp_path))
    assert 'mIoU' in output
    output = succeeded(run_tool('test.py', config, work_dir / 'iter_2.pth', '--work-dir',
                                work_dir, *options, cwd=tmp_path))
    assert 'mIoU' in output
