# DenseCLIP on an ImageNet-1k ResNetV1c-50 + Semantic FPN (Table 5, "any backbone"): a
# randomly initialised attention pool maps C5 into the text space of CLIP ViT-B/16's text
# encoder. Same data and 80k schedule as Table 1; compare with
# ../clip_fpn/fpn_r50_8xb4-80k_ade20k-512x512.py. Note that the schedule's `backbone`
# lr_mult (0.1) also covers the new attention pool (`backbone.attnpool`).
_base_ = [
    '../_base_/models/denseclip_r50-in1k.py', '../_base_/datasets/ade20k_clip-512x512.py',
    '../_base_/schedules/schedule_80k_adamw.py', '../_base_/default_runtime.py'
]
crop_size = {{_base_.crop_size}}  # the dataset's random crop
model = dict(data_preprocessor=dict(size=crop_size))
