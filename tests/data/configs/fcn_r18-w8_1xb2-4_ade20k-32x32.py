# A tiny FCN (ResNetV1c-18 at width 8) on 32x32 ADE20K-layout images: exercises the tools
# and the base configs on CPU in seconds. SyncBN on purpose: the tools revert it on CPU.
# Set the data with --cfg-options {train,val,test}_dataloader.dataset.data_root=DIR.
_base_ = [
    '../../../configs/_base_/datasets/ade20k_clip-512x512.py',
    '../../../configs/_base_/default_runtime.py',
    '../../../configs/_base_/schedules/schedule_80k_adamw.py',
]
crop_size = (32, 32)
img_scale = (64, 32)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size=crop_size),
    backbone=dict(
        type='ResNetV1c',
        depth=18,
        stem_channels=8,
        base_channels=8,
        out_indices=(3, ),
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),  # output stride 8
        norm_cfg=norm_cfg),
    decode_head=dict(
        type='FCNHead',
        in_channels=8 * 2**3,  # base_channels x 2^(stages - 1)
        in_index=0,
        channels=16,
        num_convs=1,
        concat_input=False,
        num_classes=150,
        norm_cfg=norm_cfg,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(21, 21)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(int(img_scale[0] * r), int(img_scale[1] * r)),
                  keep_ratio=True) for r in (0.5, 1.0)],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ]),
]
loader = dict(num_workers=0, persistent_workers=False)
train_dataloader = dict(loader, batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(loader, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
default_hooks = dict(logger=dict(interval=1))
