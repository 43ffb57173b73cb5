# CLIP ViT-B/16 + Semantic FPN baseline (640 crops).
_base_ = ['./fpn_clip_r50.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='CLIPVisionTransformer',
        pretrained='pretrained/ViT-B-16.pt',
        patch_size=16,
        width=768,
        layers=12,
        heads=12,
        output_dim=512,
        out_indices=(3, 5, 7, 11),
        drop_path_rate=0.1,
        norm_cfg={{_base_.norm_cfg}},
        input_resolution=640),
    neck=dict(in_channels=[768, 768, 768, 768]),
    test_cfg=dict(crop_size=(640, 640), stride=(426, 426)))
