# Zero-shot CLIP RN50 on ADE20K-150 (no training: test only). The 150 names are the dataset's;
# label 0 ("other") is ignored, so no background class is needed.
#   python tools/test.py configs/zero_shot/zero-shot_clip-r50_ade20k-512x512.py pretrained/RN50.pt
_base_ = [
    '../_base_/models/zero_shot_clip_r50.py', '../_base_/datasets/ade20k_clip-512x512.py',
    '../_base_/default_runtime.py'
]
train_dataloader = None  # nothing to train
test_cfg = dict(type='TestLoop')
val_cfg = dict(type='ValLoop')
default_hooks = dict(visualization=dict(type='SegVisualizationHook'))  # --show-dir
