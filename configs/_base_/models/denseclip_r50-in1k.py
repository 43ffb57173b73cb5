# DenseCLIP on an ImageNet ResNet-50 (the paper's Table 5): a randomly initialised attention
# pool maps C5 into the 512-d text space of CLIP ViT-B/16's text encoder (the text branch
# takes that width from the pool's output_dim).
_base_ = ['./denseclip_r50.py']
model = dict(
    pretrained=None,
    text_pretrained='pretrained/ViT-B-16.pt',
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
    backbone=dict(
        _delete_=True,
        type='BackboneWithAttentionPool',
        in_channels=2048,
        output_dim=512,  # ViT-B/16's text embedding width
        num_heads=32,
        spacial_dim=16,  # 512 / 32
        backbone=dict(
            type='ResNetV1c',
            depth=50,
            out_indices=(0, 1, 2, 3),
            norm_cfg={{_base_.norm_cfg}},
            style='pytorch',
            contract_dilation=True,
            init_cfg=dict(type='Pretrained', checkpoint='pretrained/resnet50_v1c.pth'))))
