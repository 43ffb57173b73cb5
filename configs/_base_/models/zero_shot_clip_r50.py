# Zero-shot (training-free) segmentation with CLIP ResNet-50: every dense embedding of the
# image tower is classified by CLIP's text classifier (the class names written into prompt
# templates, ensembled). class_names default to the dataset's metainfo (filled in by the
# tools); the text encoder's embed_dim is derived from the backbone's output_dim. Every weight
# comes from the CLIP archive: `python tools/test.py CONFIG pretrained/RN50.pt`.
_base_ = ['./fpn_clip_r50.py']  # CLIP's data preprocessor
model = dict(
    _delete_=True,
    type='ZeroShotCLIPSegmentor',
    data_preprocessor={{_base_.data_preprocessor}},
    pretrained='pretrained/RN50.pt',  # both towers; see pretrained/README.md
    class_names=None,
    templates=None,  # denseclip.clip.zero_shot.PHOTO_TEMPLATES; or a list, or a text file
    logit_scale=100.0,  # CLIP's (clamped) temperature; the argmax does not depend on it
    backbone=dict(
        type='CLIPResNetWithAttention',
        layers=(3, 4, 6, 3),
        output_dim=1024,  # RN50's attention-pool (= text embedding) width
        input_resolution=512,  # CLIP's 7x7 grid resized once to the 16x16 of a 512 crop
        # MaskCLIP's dense embedding: the attention pool's value path at every position,
        # c_proj(v_proj(x + pos)); 'attention' (DenseCLIP's) mixes positions and segments worse
        dense_embedding='value'),
    text_encoder=dict(
        type='CLIPTextContextEncoder',
        context_length=77,  # CLIP's full prompt length: fixed templates, no learned contexts
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=12),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
# Distributed testing: torch's DDP refuses a model with no trainable parameter; this wrapper
# wraps only submodules that have some (none here), so the model runs as it is on every rank.
model_wrapper_cfg = dict(type='MMSeparateDistributedDataParallel')
