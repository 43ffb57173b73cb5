# DenseCLIP on an ImageNet-1k Swin-S + UPerNet (Table 5): Swin-T's config with 18 blocks in
# stage 3; compare with ../clip_fpn/upernet_swin-s_8xb4-80k_ade20k-512x512.py.
_base_ = './denseclip_swin-t_upernet_8xb4-80k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        backbone=dict(
            depths=(2, 2, 18, 2),
            init_cfg=dict(
                type='Pretrained', checkpoint='pretrained/swin_small_patch4_window7_224.pth'))))
