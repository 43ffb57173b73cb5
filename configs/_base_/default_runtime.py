# Runtime shared by every config: registry scope, environment, logging, visualisation, TTA.
# The hooks (logger, checkpoint, ...) live in the schedule file, as in mmseg: two `_base_`
# files may not define the same key, and the checkpoint interval belongs to the schedule.
default_scope = 'mmseg'
# Importing `denseclip` registers its backbones, text encoders, heads and segmentor.
custom_imports = dict(imports=['denseclip'], allow_failed_imports=False)

env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # NCCL for GPUs; tools/train.py and tools/test.py use gloo when CUDA is unavailable.
    # A collective that waits longer than `timeout` seconds for a rank that hangs raises, so
    # the job exits instead of blocking forever (a rank that dies is noticed at once).
    dist_cfg=dict(backend='nccl', timeout=1800),
)

# JSON logs under WORK_DIR/TIMESTAMP/vis_data (read by tools/plot_logs.py). TensorBoard is off;
# turn it on with `--cfg-options visualizer.tensorboard=True` (needs `pip install tensorboard`).
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='SegVisualizer', vis_backends=vis_backends, tensorboard=False, name='visualizer')
# The released code synchronised the backbone's BatchNorm statistics over all GPUs (32 images);
# mmengine converts every BN in distributed runs (the tools drop this on CPU).
sync_bn = 'torch'
log_processor = dict(by_epoch=False)
log_level = 'INFO'

load_from = None
resume = False
# Same config, seed, machine and thread count -> the same weights and metrics, bit for bit
# (`tools/train.py --seed N` or `--cfg-options randomness.seed=N` choose another seed).
randomness = dict(seed=0)
# A checkpoint that the runner loads (load_from, resume, the CHECKPOINT of a test) must fit the
# model exactly, also when the config is run by mmseg's own tools; `tools/train.py
# --partial-load` (partial=True) fine-tunes from one with another head. One training run at a
# time holds the work dir (a second one stops instead of overwriting its checkpoints).
custom_hooks = [dict(type='CheckpointFitHook'), dict(type='WorkDirLockHook')]

# `tools/test.py --tta` wraps the model in this and feeds it `tta_pipeline`.
tta_model = dict(type='SegTTAModel')
