# A tiny DenseCLIP (RN-style backbone of width 16, 2-layer text encoder, random init) that
# trains on the synthetic scenes on 2 CPU cores in a few minutes: the README's main job.
_base_ = [
    '../_base_/models/denseclip_r50.py', '../_base_/datasets/synthetic_ade20k-64x64.py',
    '../_base_/default_runtime.py'
]
crop_size = {{_base_.crop_size}}
model = dict(
    pretrained=None,  # random init: no CLIP weights needed
    data_preprocessor=dict(size=crop_size),
    # output_dim: the embedding width, which the text branch takes
    backbone=dict(layers=(1, 1, 1, 1), width=16, output_dim=64, input_resolution=64),
    text_encoder=dict(
        context_length=9,  # 4 learnable contexts + 5 name tokens
        transformer_width=64,
        transformer_heads=2,
        transformer_layers=2),
    context_decoder=dict(transformer_width=32, transformer_heads=2, transformer_layers=1),
    pre_prompter=dict(transformer_width=32, transformer_heads=2, transformer_layers=1),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=32),
    decode_head=dict(in_channels=[32] * 4, channels=32, norm_cfg=dict(type='BN')),
    test_cfg=dict(mode='whole'))

max_iters = 1000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=0.9, eta_min=1e-5, by_epoch=False, begin=50, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=500)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(  # as in the 80k schedule; see docs/robustness.md
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, interval=500, max_keep_ckpts=2),
    nan_guard=dict(type='NaNGuardHook', action='stop'),
    seed=dict(type='IterationSeedHook'))
