# DenseCLIP with open_clip's ViT-L/14 trained on DataComp-XL
# (laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K, downloaded by hand: docs/open_clip.md)
# + Semantic FPN on ADE20K, 80k iterations on 8 GPUs x 4 images.
_base_ = [
    '../_base_/models/denseclip_openclip_vit-l-14.py', '../_base_/datasets/ade20k_clip-512x512.py',
    '../_base_/schedules/schedule_80k_adamw.py', '../_base_/default_runtime.py'
]
crop_size = {{_base_.crop_size}}  # the dataset's random crop
model = dict(
    pretrained='pretrained/open_clip/ViT-L-14_datacomp_xl_s13b_b90k.safetensors',  # both towers
    data_preprocessor=dict(size=crop_size))
