# ImageNet ResNet-50 (mmseg's ResNetV1c) + Semantic FPN: the paper's ImageNet baseline.
_base_ = ['./fpn_clip_r50.py']
data_preprocessor = dict(
    # ImageNet normalisation for the ImageNet-pretrained backbone
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375])
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
        type='ResNetV1c',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 1, 1),
        strides=(1, 2, 2, 2),
        norm_cfg={{_base_.norm_cfg}},
        norm_eval=False,
        style='pytorch',
        contract_dilation=True,
        # mmseg's ImageNet weights, placed locally (never downloaded at run time)
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/resnet50_v1c.pth')))
