# DenseCLIP on an ImageNet-1k ResNetV1c-101 + Semantic FPN (Table 5); compare with
# ../clip_fpn/fpn_r101_8xb4-80k_ade20k-512x512.py.
_base_ = './denseclip_r50-in1k_fpn_8xb4-80k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        backbone=dict(
            depth=101,
            init_cfg=dict(type='Pretrained', checkpoint='pretrained/resnet101_v1c.pth'))))
