# DenseCLIP with open_clip's ConvNeXt-B (wide) CLIP: the four ConvNeXt stages feed the neck; the
# dense embeddings (the image head at every position of the last stage) are at stride 32, where
# the score map joins, as for CLIP's ResNets.
_base_ = ['./denseclip_openclip_vit-b-16.py']
model = dict(
    score_concat_index=3,  # the 1/32 level
    backbone=dict(
        _delete_=True,
        type='OpenCLIPVisionBackbone',
        model_name='convnext_base_w',
        input_resolution=512),
    text_encoder=dict(model_name='convnext_base_w'),
    neck=dict(in_channels=[128, 256, 512, 1024]))  # ConvNeXt-B's stage widths
