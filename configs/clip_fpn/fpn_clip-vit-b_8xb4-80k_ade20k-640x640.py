# Baseline of Table 1: CLIP ViT-B/16 + Semantic FPN on 640x640 crops, no text branch.
_base_ = [
    '../_base_/models/fpn_clip_vit-b.py', '../_base_/datasets/ade20k_clip-640x640.py',
    '../_base_/schedules/schedule_80k_adamw.py', '../_base_/default_runtime.py'
]
crop_size = {{_base_.crop_size}}  # the dataset's random crop
model = dict(data_preprocessor=dict(size=crop_size))
