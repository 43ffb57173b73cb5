# DenseCLIP with CLIP's ViT-B/16 (640 crops): pyramid from blocks 3/5/7/11, score map
# concatenated to the stride-16 level; the text branch takes the 512-d embedding width from
# the backbone's output_dim.
_base_ = ['./denseclip_r50.py']
model = dict(
    pretrained='pretrained/ViT-B-16.pt',
    score_concat_index=2,  # the 1/16 level, where the dense embeddings live
    backbone=dict(
        _delete_=True,
        type='CLIPVisionTransformer',
        patch_size=16,
        width=768,
        layers=12,
        heads=12,
        output_dim=512,  # ViT-B/16's image (= text) embedding width
        out_indices=(3, 5, 7, 11),
        drop_path_rate=0.1,
        get_embeddings=True,
        norm_cfg={{_base_.norm_cfg}},
        input_resolution=640),
    neck=dict(in_channels=[768, 768, 768, 768]),
    test_cfg=dict(crop_size=(640, 640), stride=(426, 426)))
