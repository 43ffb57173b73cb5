# Baseline of Table 5: ImageNet-1k Swin-T + UPerNet without DenseCLIP. For a fair comparison
# the paper trains every Table 5 model with the same data and 80k AdamW schedule as Table 1,
# not mmseg's Swin recipe (AdamW lr 6e-5, weight decay 0.01, no decay on the relative position
# tables, batch 16, 160k iterations).
_base_ = [
    '../_base_/models/upernet_swin.py', '../_base_/datasets/ade20k_clip-512x512.py',
    '../_base_/schedules/schedule_80k_adamw.py', '../_base_/default_runtime.py'
]
crop_size = {{_base_.crop_size}}  # the dataset's random crop
num_classes = 150  # ADE20K
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))
