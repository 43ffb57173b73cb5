# DenseCLIP with an open_clip ViT-B/16 (LAION-2B, DataComp-XL, ... : the leaf config names the
# checkpoint). The image tower is built from open_clip's architecture registry; its pyramid is
# that of CLIP's ViT-B/16 (blocks 3/5/7/11), the score map joins the stride-16 level, and the
# text branch takes the 512-d embedding width from the backbone. Needs the open_clip extra
# (pip install -e .[open_clip]); weights are downloaded by hand (docs/open_clip.md).
_base_ = ['./denseclip_r50.py']
model = dict(
    pretrained=None,  # set by the leaf config: an open_clip checkpoint file
    score_concat_index=2,  # the 1/16 level, where the dense embeddings live
    backbone=dict(
        _delete_=True,
        type='OpenCLIPVisionBackbone',
        model_name='ViT-B-16',
        out_indices=(3, 5, 7, 11),
        norm_cfg={{_base_.norm_cfg}},
        input_resolution=512),
    text_encoder=dict(
        _delete_=True,
        type='OpenCLIPTextContextEncoder',
        model_name='ViT-B-16',
        context_length=13),  # open_clip's 77 positions truncated: 8 contexts + 5 name tokens
    neck=dict(in_channels=[768, 768, 768, 768]))  # ViT-B's token width at every level
