# DenseCLIP with an open_clip ViT-L/14: ViT-B/16's setup with 24 blocks of width 1024 (the
# pyramid from the last block of each quarter) and the 768-d embeddings of ViT-L/14.
_base_ = ['./denseclip_openclip_vit-b-16.py']
model = dict(
    backbone=dict(
        model_name='ViT-L-14',
        out_indices=(5, 11, 17, 23),
        # 512 crops are zero-padded to the 14 px patch grid: 37 x 37 tokens, the grid of 518 px
        input_resolution=518),
    text_encoder=dict(model_name='ViT-L-14'),
    neck=dict(in_channels=[1024, 1024, 1024, 1024]))
