# Contrastive CLIP training: AdamW with CLIP's settings, linear warm-up, cosine decay to zero.
# CLIP paper (Radford et al. 2021), Table 19 ff.: decoupled weight decay 0.2 on all weights but
# gains and biases, Adam beta1 0.9, beta2 0.999 and eps 1e-8 for the ResNets (0.98 and 1e-6
# for the ViTs), lr 5e-4 (RN50, ViT-B), 2 000 warm-up iterations, cosine schedule. These are
# the from-scratch settings (`*-scratch` configs); fine-tuning OpenAI's weights (this file's
# default) takes a 50x smaller lr and weight decay 0.1, as end-to-end CLIP fine-tuning does
# (FLYP, Goyal et al. 2023: lr 1e-5, weight decay 0.1).
max_iters = 10000
# CLIP warms up for 2 000 of its ~390k iterations (32 epochs x 400M pairs / 32 768); 2 000
# would be a fifth of a 10k-iteration run: 5 % instead
warmup_iters = 500
optim_wrapper = dict(
    type='OptimWrapper',  # `tools/train.py --amp` switches to mixed precision
    optimizer=dict(type='AdamW', lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1),
    paramwise_cfg=dict(
        norm_decay_mult=0.,  # gains (BN and LayerNorm weights) and their biases
        bias_decay_mult=0.,
        custom_keys={
            'logit_scale': dict(decay_mult=0.),  # the temperature
            'class_embedding': dict(decay_mult=0.),  # a 1-d vector, like the gains
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=False, begin=warmup_iters,
         end=max_iters, T_max=max_iters - warmup_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
# no validation loop (see the dataset config); zero-shot evaluation uses the checkpoints
val_cfg = None
val_dataloader = None
val_evaluator = None
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, interval=2000, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    nan_guard=dict(type='NaNGuardHook', action='stop'),
    seed=dict(type='IterationSeedHook'))
