# DenseCLIP RN50 (Table 1) on one GPU: 4 images per iteration, gradients accumulated over 8
# iterations, so each of the 80k optimiser steps sees the paper's 32 images at the paper's lr.
# Activation checkpointing keeps a 4-image iteration small. Not the same run: BatchNorm sees 4
# images at a time instead of 32 (docs/deploy.md).
_base_ = './denseclip_r50_fpn_8xb4-80k_ade20k-512x512.py'
accumulation = 8  # 1 GPU x 4 images x 8 iterations = 32 images per optimiser step
model = dict(
    backbone=dict(with_cp=True),
    text_encoder=dict(with_cp=True),
    decode_head=dict(norm_cfg=dict(type='BN', requires_grad=True)))  # one process: no SyncBN
optim_wrapper = dict(accumulative_counts=accumulation)
# mmengine counts data iterations: every step count of the 80k schedule is x 8. The lr
# schedule starts on the last iteration of the first step, so that optimiser step s (taken
# on iteration 8 s + 7) has exactly the 8-GPU schedule's lr of iteration s.
max_iters = 80000 * accumulation
warmup_iters = 1500 * accumulation
eval_interval = 8000 * accumulation
param_scheduler = [
    dict(type='WarmupPolyLR', power=0.9, eta_min=1e-6, warmup_iters=warmup_iters,
         warmup_ratio=1e-6, by_epoch=False, begin=accumulation - 1,
         end=accumulation - 1 + max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=eval_interval)
default_hooks = dict(
    logger=dict(interval=50 * accumulation), checkpoint=dict(interval=eval_interval))
