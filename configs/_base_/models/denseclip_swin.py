# DenseCLIP on an ImageNet-1k Swin-T + UPerNet (the paper's Table 5, "any backbone"): the text
# branch and attention pool of ./denseclip_r50-in1k.py around the Swin and heads of
# ./swin_upernet_parts.py, shared with the baseline ./upernet_swin.py. The pool maps Swin's
# last stage into the 512-d text space of CLIP ViT-B/16's text encoder; UPerHead takes the
# backbone's channels and DenseCLIP adds the K score-map channels to the last level.
_base_ = ['./denseclip_r50-in1k.py', './swin_upernet_parts.py']
model = dict(
    # num_heads: 32 as in CLIP's attention pools (768 / 32 = 24 channels per head)
    backbone=dict(in_channels=768, backbone={{_base_.swin}}),  # Swin's last stage
    score_concat_index=3,  # the stride-32 level, where the attention pool's dense map lives
    neck=None,
    decode_head={{_base_.uper_head}},
    auxiliary_head={{_base_.fcn_aux_head}})
