# DenseCLIP with CLIP RN101 + Semantic FPN (Table 1): RN50's recipe with the deeper tower,
# whose attention pool (and so the text embedding, derived from it) is 512-d instead of 1024-d.
_base_ = './denseclip_r50_fpn_8xb4-80k_ade20k-512x512.py'
model = dict(
    pretrained='pretrained/RN101.pt',
    backbone=dict(layers=(3, 4, 23, 3), output_dim=512))
