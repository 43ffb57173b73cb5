# ImageNet-1k Swin-T + UPerNet with an FCN auxiliary head: the non-DenseCLIP baseline of the
# paper's Table 5. The ImageNet baseline ./fpn_r50.py (its normalisation and DenseCLIP's test
# protocol, slide 512 / 341, where mmseg's Swin configs test whole images) with the Swin and
# heads of ./swin_upernet_parts.py, shared with DenseCLIP's ./denseclip_swin.py, in place of
# ResNet-50 and Semantic FPN. The leaf configs set num_classes.
_base_ = ['./fpn_r50.py', './swin_upernet_parts.py']
model = dict(
    backbone={{_base_.swin}},
    neck=None,
    decode_head={{_base_.uper_head}},
    auxiliary_head={{_base_.fcn_aux_head}})
