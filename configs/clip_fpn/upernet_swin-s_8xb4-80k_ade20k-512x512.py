# Baseline of Table 5: ImageNet-1k Swin-S + UPerNet (Swin-T's config with 18 blocks in stage 3).
_base_ = './upernet_swin-t_8xb4-80k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        depths=(2, 2, 18, 2),
        init_cfg=dict(
            type='Pretrained', checkpoint='pretrained/swin_small_patch4_window7_224.pth')))
