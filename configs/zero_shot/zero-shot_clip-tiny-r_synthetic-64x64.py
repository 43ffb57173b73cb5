# Zero-shot segmentation of the synthetic scenes with a tiny CLIP (ResNet of width 8, one block
# per stage; 2-layer text tower of width 64, as tests/test_clip/tiny.py builds it). Random
# weights unless a CLIP archive of this shape is given:
#   python tools/test.py configs/zero_shot/zero-shot_clip-tiny-r_synthetic-64x64.py TINY.pt
_base_ = [
    '../_base_/models/zero_shot_clip_r50.py', '../_base_/datasets/synthetic_ade20k-64x64.py',
    '../_base_/default_runtime.py'
]
model = dict(
    pretrained=None,  # the CHECKPOINT argument of tools/test.py / tools/demo.py is the archive
    backbone=dict(layers=(1, 1, 1, 1), width=8, output_dim=32, input_resolution=64),
    text_encoder=dict(transformer_width=64, transformer_heads=1, transformer_layers=2),
    test_cfg=dict(mode='whole'))
train_dataloader = None  # nothing to train
test_cfg = dict(type='TestLoop')
val_cfg = dict(type='ValLoop')
default_hooks = dict(visualization=dict(type='SegVisualizationHook'))  # --show-dir
