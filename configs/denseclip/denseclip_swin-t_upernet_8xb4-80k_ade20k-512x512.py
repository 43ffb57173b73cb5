# DenseCLIP on an ImageNet-1k Swin-T + UPerNet (Table 5); compare with
# ../clip_fpn/upernet_swin-t_8xb4-80k_ade20k-512x512.py. Same data and 80k AdamW schedule as
# Table 1 (see that baseline); the schedule's `backbone` lr_mult (0.1) also covers the new
# attention pool (`backbone.attnpool`).
_base_ = [
    '../_base_/models/denseclip_swin.py', '../_base_/datasets/ade20k_clip-512x512.py',
    '../_base_/schedules/schedule_80k_adamw.py', '../_base_/default_runtime.py'
]
crop_size = {{_base_.crop_size}}  # the dataset's random crop
model = dict(data_preprocessor=dict(size=crop_size))
