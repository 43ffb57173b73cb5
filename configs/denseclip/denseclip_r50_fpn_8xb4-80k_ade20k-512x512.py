# DenseCLIP (CLIP RN50, post-model prompting) + Semantic FPN on ADE20K, 80k iterations on
# 8 GPUs x 4 images: the paper's Table 1 (43.5 mIoU single-scale, 44.7 multi-scale).
_base_ = [
    '../_base_/models/denseclip_r50.py', '../_base_/datasets/ade20k_clip-512x512.py',
    '../_base_/schedules/schedule_80k_adamw.py', '../_base_/default_runtime.py'
]
crop_size = {{_base_.crop_size}}  # the dataset's random crop
model = dict(data_preprocessor=dict(size=crop_size))
