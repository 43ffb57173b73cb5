# Baseline of Table 1: CLIP RN101 + Semantic FPN (RN50's baseline with the deeper tower).
_base_ = './fpn_clip-r50_8xb4-80k_ade20k-512x512.py'
model = dict(backbone=dict(layers=(3, 4, 23, 3), pretrained='pretrained/RN101.pt'))
