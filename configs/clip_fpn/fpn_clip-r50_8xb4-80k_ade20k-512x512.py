# Baseline of Table 1: CLIP RN50 image encoder fine-tuned with Semantic FPN, no text branch
# (39.6 mIoU single-scale, 41.6 multi-scale), on DenseCLIP's data and schedule.
_base_ = [
    '../_base_/models/fpn_clip_r50.py', '../_base_/datasets/ade20k_clip-512x512.py',
    '../_base_/schedules/schedule_80k_adamw.py', '../_base_/default_runtime.py'
]
crop_size = {{_base_.crop_size}}  # the dataset's random crop
model = dict(data_preprocessor=dict(size=crop_size))
