# Zero-shot CLIP RN101 on ADE20K-150: RN50's config with the deeper tower, whose attention pool
# (and so the text embedding, derived from it) is 512-d.
_base_ = './zero-shot_clip-r50_ade20k-512x512.py'
model = dict(
    pretrained='pretrained/RN101.pt',
    backbone=dict(layers=(3, 4, 23, 3), output_dim=512))
