# ImageNet-1k Swin-T with UPerNet and an FCN auxiliary head, as in mmseg's
# swin-tiny-patch4-window7-in1k-pre_upernet configs (Swin-S: depths (2, 2, 18, 2) in the leaf
# configs). Not a model but its parts, shared by the paper's Table 5 pair so that it compares
# like with like: the baseline ./upernet_swin.py and DenseCLIP ./denseclip_swin.py each put
# them in place of the ResNet and the FPN head of their own base (`_delete_` drops those). The
# heads leave num_classes to DenseCLIP (derived from the class names) and to the baseline's
# leaf configs (mmseg's Swin configs set it there too).
swin_channels = [96, 192, 384, 768]  # embed_dims x 2^stage
swin_norm_cfg = dict(type='SyncBN', requires_grad=True)  # of the heads
swin = dict(
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
    # mmseg's converted ImageNet-1k weights, placed locally (never downloaded at run time)
    init_cfg=dict(type='Pretrained', checkpoint='pretrained/swin_tiny_patch4_window7_224.pth'))
uper_head = dict(
    _delete_=True,
    type='UPerHead',
    in_channels=swin_channels,
    in_index=[0, 1, 2, 3],
    pool_scales=(1, 2, 3, 6),
    channels=512,
    dropout_ratio=0.1,
    num_classes=None,
    norm_cfg=swin_norm_cfg,
    align_corners=False,
    loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0))
fcn_aux_head = dict(
    type='FCNHead',
    in_channels=swin_channels[2],  # stage 3
    in_index=2,
    channels=256,
    num_convs=1,
    concat_input=False,
    dropout_ratio=0.1,
    num_classes=None,
    norm_cfg=swin_norm_cfg,
    align_corners=False,
    loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4))
