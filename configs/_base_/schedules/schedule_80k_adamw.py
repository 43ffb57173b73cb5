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
        # no parameters here. As in the released code, parameters whose names contain
        # 'norm' (the neck/heads' `norm*` layers, the context decoder's norm1-3) are not
        # decayed; mmengine applies the longest matching key, so backbone norms keep theirs.
        custom_keys={
            'backbone': dict(lr_mult=0.1),
            'norm': dict(decay_mult=0.),
        }))

# The released (mmcv 1.x) schedule, per parameter group with base lr b (1e-4 x lr_mult):
#   lr(t) = w(t) * ((b - 1e-6) * (1 - t / 80000) ** 0.9 + 1e-6),
#   w(t) = 1 - (1 - t / 1500) * (1 - 1e-6) for t < 1500, else 1,
# where t is the iteration (0-based). mmengine's LinearLR + PolyLR chain cannot express
# 'warm-up factor x poly' (see denseclip/engine/schedulers.py).
param_scheduler = [
    dict(
        type='WarmupPolyLR',
        power=0.9,
        eta_min=1e-6,
        warmup_iters=warmup_iters,
        warmup_ratio=1e-6,
        by_epoch=False,
        begin=0,
        end=max_iters),
]

train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=eval_interval)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# denseclip.engine's hooks make long jobs safe to kill and resume (docs/robustness.md):
# checkpoints are written atomically and never with NaN weights, a non-finite loss stops
# training before the optimiser step, and the random generators are reseeded per iteration
# so that `tools/train.py --resume` continues exactly as an uninterrupted run would.
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='AtomicCheckpointHook',
        by_epoch=False,
        interval=eval_interval,
        max_keep_ckpts=3),  # checkpoints hold the AdamW state too: keep a few
    sampler_seed=dict(type='DistSamplerSeedHook'),
    nan_guard=dict(type='NaNGuardHook', action='stop'),  # or 'skip' the step
    seed=dict(type='IterationSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
