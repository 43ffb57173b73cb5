# Zero-shot segmentation with CLIP ViT-B/16 (see zero_shot_clip_r50.py): the dense embeddings
# are MaskCLIP's, the patch tokens of the last block run with its attention reduced to the
# value path, through ln_post and proj; 640 windows as for DenseCLIP's ViT-B. The
# feature pyramid (fpn1-4) is not part of CLIP's archive and does not feed the prediction.
_base_ = ['./zero_shot_clip_r50.py']
model = dict(
    pretrained='pretrained/ViT-B-16.pt',
    backbone=dict(
        _delete_=True,
        type='CLIPVisionTransformer',
        patch_size=16,
        width=768,
        layers=12,
        heads=12,
        output_dim=512,  # ViT-B/16's image (= text) embedding width
        get_embeddings=True,
        dense_embedding='value',  # MaskCLIP's: the last block's value path, no token mixing
        input_resolution=640),  # CLIP's 14x14 grid resized once to the 40x40 of a 640 crop
    test_cfg=dict(crop_size=(640, 640), stride=(426, 426)))
