# DenseCLIP with CLIP RN101 + Semantic FPN (Table 1): RN50's recipe with the deeper tower,
# whose attention pool (and so the text embedding) is 512-d instead of 1024-d.
_base_ = './denseclip_r50_fpn_8xb4-80k_ade20k-512x512.py'
embed_dim = 512  # RN101's output_dim = its text tower's embed_dim
model = dict(
    pretrained='pretrained/RN101.pt',
    backbone=dict(layers=(3, 4, 23, 3), output_dim=embed_dim),
    text_encoder=dict(embed_dim=embed_dim),
    context_decoder=dict(visual_dim=embed_dim),
    pre_prompter=dict(visual_dim=embed_dim))
