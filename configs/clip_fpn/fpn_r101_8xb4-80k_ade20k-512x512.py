# ImageNet baseline of Table 1: mmseg's ResNetV1c-101 (ImageNet-1k weights) + Semantic FPN.
_base_ = './fpn_r50_8xb4-80k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/resnet101_v1c.pth')))
