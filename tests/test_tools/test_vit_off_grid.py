"""tools/train.py and tools/test.py with a ViT whose inputs are not multiples of its patch size.

A tiny ViT DenseCLIP trains on 40 x 40 crops (patch 16) and is evaluated on whole images resized
to 91 x 128: the backbone pads to the patch grid and crops its levels back, so both tools run
through and score every pixel (tests/test_models/test_clip_backbones.py checks the values).
"""
import os
import subprocess
import sys
from pathlib import Path

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


def _run(*args: str, cwd: Path) -> str:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def test_train_and_test_a_vit_off_the_patch_grid(tmp_path):
    data = tmp_path / 'data'
    _run(str(ROOT / 'tools/make_synthetic_data.py'), '--root', str(data), '--num-train', '4',
         '--num-val', '2', '--size', '40', '56', cwd=tmp_path)
    config = tmp_path / 'vit_off_grid.py'
    config.write_text(CONFIG)
    options = ['--cfg-options'] + [
        f'{split}_dataloader.dataset.data_root={data}/ADEChallengeData2016'
        for split in ('train', 'val', 'test')]
    work_dir = tmp_path / 'work'
    output = _run(str(ROOT / 'tools/train.py'), str(config), '--work-dir', str(work_dir),
                  *options, cwd=tmp_path)
    assert 'mIoU' in output
    output = _run(str(ROOT / 'tools/test.py'), str(config), str(work_dir / 'iter_2.pth'),
                  '--work-dir', str(work_dir), *options, cwd=tmp_path)
    assert 'mIoU' in output
