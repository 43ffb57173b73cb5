# ImageNet baseline of Table 1: mmseg's ResNetV1c-50 (ImageNet-1k weights) + Semantic FPN,
# trained with the same data pipeline and AdamW schedule as the CLIP models (as in the paper)
# but with ImageNet normalisation (from the model base).
_base_ = [
    '../_base_/models/fpn_r50.py', '../_base_/datasets/ade20k_clip-512x512.py',
    '../_base_/schedules/schedule_80k_adamw.py', '../_base_/default_runtime.py'
]
crop_size = {{_base_.crop_size}}  # the dataset's random crop
model = dict(data_preprocessor=dict(size=crop_size))
