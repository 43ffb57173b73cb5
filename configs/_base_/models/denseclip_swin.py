# DenseCLIP on an ImageNet-1k Swin-T + UPerNet (the paper's Table 5, "any backbone"). Like
# ./denseclip_r50-in1k.py, whose text branch it keeps: a randomly initialised attention pool
# maps Swin's last stage into the 512-d text space of CLIP ViT-B/16's text encoder. The Swin
# and heads are those of ./upernet_swin.py (a test checks that they agree); UPerHead takes
# the backbone's channels and DenseCLIP adds the K score-map channels to the last level.
_base_ = ['./denseclip_r50-in1k.py']
swin_channels = 768  # Swin-T/S last stage: embed_dims 96 x 2^3
model = dict(
    backbone=dict(
        in_channels=swin_channels,
        # num_heads: 32 as in CLIP's attention pools (768 / 32 = 24 channels per head)
        backbone=dict(
            _delete_=True,
            type='SwinTransformer',
            pretrain_img_size=224,
            embed_dims=96,
            patch_size=4,
            window_size=7,
            mlp_ratio=4,
            depths=(2, 2, 6, 2),
            num_heads=(3, 6, 12, 24),
            strides=(4, 2, 2, 2),
            out_indices=(0, 1, 2, 3),
            qkv_bias=True,
            qk_scale=None,
            patch_norm=True,
            drop_rate=0.,
            attn_drop_rate=0.,
            drop_path_rate=0.3,
            use_abs_pos_embed=False,
            act_cfg=dict(type='GELU'),
            norm_cfg=dict(type='LN', requires_grad=True),
            init_cfg=dict(
                type='Pretrained', checkpoint='pretrained/swin_tiny_patch4_window7_224.pth'))),
    score_concat_index=3,  # the stride-32 level, where the attention pool's dense map lives
    neck=None,
    decode_head=dict(
        _delete_=True,
        type='UPerHead',
        in_channels=[96, 192, 384, swin_channels],  # the backbone's; + K added by DenseCLIP
        in_index=[0, 1, 2, 3],
        pool_scales=(1, 2, 3, 6),
        channels=512,
        dropout_ratio=0.1,
        num_classes=None,  # derived from class_names
        norm_cfg={{_base_.norm_cfg}},
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=384,  # stage 3
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=None,  # derived from class_names
        norm_cfg={{_base_.norm_cfg}},
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)))
