# DenseCLIP's schedule: AdamW, 1 500-iteration linear warm-up, poly decay to 80k iterations.
# 80k iters x 32 images (8 GPUs x 4, see the dataset config) = ~127 epochs of ADE20K.
max_iters = 80000
warmup_iters = 1500
eval_interval = 8000

optimizer = dict(type='AdamW', lr=1e-4, weight_decay=1e-4)
optim_wrapper = dict(
    type='OptimWrapper',  # `tools/train.py --amp` switches to mixed precision
    optimizer=optimizer,
    paramwise_cfg=dict(
        # The CLIP image encoder is fine-tuned 10x slower than the randomly initialised
        # parts; the text encoder is frozen by the model (requires_grad=False), so it has
        # no parameters here. mmengine applies the longest matching custom key and skips
        # the generic rules for it: backbone norms take `backbone`'s settings (they keep
        # their decay, as in the released code); elsewhere norm layers are not decayed.
        custom_keys={
            'backbone': dict(lr_mult=0.1),
            'norm': dict(decay_mult=0.),
        },
        norm_decay_mult=0.0))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-6,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
    dict(
        type='PolyLR',
        power=0.9,
        eta_min=1e-6,
        by_epoch=False,
        begin=warmup_iters,
        end=max_iters),
]

train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=eval_interval)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=eval_interval,
        max_keep_ckpts=3),  # checkpoints hold the AdamW state too: keep a few
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
