# Zero-shot segmentation of the synthetic scenes (128 x 128, whole images) with the tiny CLIP
# that configs/clip/clip_tiny-r_1xb32-0.3k_synthetic-captions-128x128.py trains: the towers
# below are that config's `model.arch` (a test checks that they agree). Its checkpoint, or a CLIP
# archive of this shape, is the CHECKPOINT (random weights without one):
#   python tools/test.py configs/zero_shot/zero-shot_clip-tiny-r_synthetic-128x128.py \
#       work_dirs/clip_quickstart/iter_300.pth
_base_ = [
    '../_base_/models/zero_shot_clip_r50.py', '../_base_/datasets/synthetic_ade20k-64x64.py',
    '../_base_/default_runtime.py'
]
model = dict(
    pretrained=None,  # the CHECKPOINT argument of tools/test.py / tools/demo.py is the archive
    backbone=dict(
        layers=(1, 1, 1, 1),
        width=16,
        output_dim=64,  # the CLIP config's embed_dim
        input_resolution=128),  # the scenes' side, tested whole: the 4 x 4 grid it was trained on
    text_encoder=dict(
        context_length=24,  # as trained; the templates with the 8 class names take <= 11
        transformer_width=64,
        transformer_heads=1,
        transformer_layers=2),
    test_cfg=dict(mode='whole'))  # the dataset's test pipeline keeps the scenes at 128 x 128
train_dataloader = None  # nothing to train
test_cfg = dict(type='TestLoop')
val_cfg = dict(type='ValLoop')
default_hooks = dict(visualization=dict(type='SegVisualizationHook'))  # --show-dir
