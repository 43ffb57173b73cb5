# Zero-shot CLIP ViT-B/16 on ADE20K-150, 640 windows (as DenseCLIP's ViT-B) over images whose
# short edge is 640.
_base_ = [
    '../_base_/models/zero_shot_clip_vit-b.py', '../_base_/datasets/ade20k_clip-640x640.py',
    '../_base_/default_runtime.py'
]
train_dataloader = None  # nothing to train
test_cfg = dict(type='TestLoop')
val_cfg = dict(type='ValLoop')
default_hooks = dict(visualization=dict(type='SegVisualizationHook'))  # --show-dir
