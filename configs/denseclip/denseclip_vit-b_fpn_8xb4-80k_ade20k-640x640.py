# DenseCLIP with CLIP ViT-B/16 + Semantic FPN on 640x640 crops (Table 1); slide inference
# with 640 windows (stride 426) comes from the model base.
_base_ = [
    '../_base_/models/denseclip_vit-b.py', '../_base_/datasets/ade20k_clip-640x640.py',
    '../_base_/schedules/schedule_80k_adamw.py', '../_base_/default_runtime.py'
]
crop_size = {{_base_.crop_size}}  # the dataset's random crop
model = dict(data_preprocessor=dict(size=crop_size))
