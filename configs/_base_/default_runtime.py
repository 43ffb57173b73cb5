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
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [
    dict(type='LocalVisBackend'),
    # dict(type='TensorboardVisBackend'),  # needs `pip install tensorboard`
]
visualizer = dict(
    type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'

load_from = None
resume = False

# `tools/test.py --tta` wraps the model in this and feeds it `tta_pipeline`.
tta_model = dict(type='SegTTAModel')
