# A tiny CLIP (ResNet of width 16 with one block per stage, 2-layer text transformer, random
# init) trained with the contrastive loss on the synthetic scenes' captions: 2-4 minutes
# on 2 CPU cores. Write the data first: python tools/make_synthetic_data.py
# The demonstration around it (zero-shot classification and segmentation before and after
# this training): bash tools/clip_quickstart.sh; the zero-shot segmentation config of this
# CLIP's shape: configs/zero_shot/zero-shot_clip-tiny-r_synthetic-128x128.py
_base_ = [
    '../_base_/models/clip_r50.py', '../_base_/datasets/synthetic_captions-128x128.py',
    '../_base_/schedules/clip_10k_adamw.py', '../_base_/default_runtime.py'
]
model = dict(
    pretrained=None,  # OpenAI's initialisation: no weights needed
    arch=dict(
        embed_dim=64,
        image_resolution={{_base_.crop_size}},  # the ResNet's stride 32: a 4 x 4 dense grid
        vision_layers=(1, 1, 1, 1),
        vision_width=16,  # attention pool of 16 x 32 = 512 channels, 8 heads
        context_length=24,  # the longest synthetic caption has ~20 tokens; longer ones are cut
        transformer_width=64,
        transformer_heads=1,
        transformer_layers=2))
max_iters = 300  # ~50 passes over the 200 training captions; the loss is flat by then
warmup_iters = 30
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.2))  # a tiny model: a larger lr
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=0., by_epoch=False, begin=warmup_iters,
         end=max_iters, T_max=max_iters - warmup_iters),
]
train_cfg = dict(max_iters=max_iters)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
# a fixed seed: the sample order, the crops and so the losses are the same run to run (one
# thread per process, as tools/clip_quickstart.sh sets, where the CPU kernels are deterministic)
randomness = dict(seed=0)
