# DenseCLIP with open_clip's ViT-B/16 trained on LAION-2B
# (laion/CLIP-ViT-B-16-laion2B-s34B-b88K, downloaded by hand: docs/open_clip.md)
# + Semantic FPN on ADE20K, 80k iterations on 8 GPUs x 4 images.
_base_ = [
    '../_base_/models/denseclip_openclip_vit-b-16.py', '../_base_/datasets/ade20k_clip-512x512.py',
    '../_base_/schedules/schedule_80k_adamw.py', '../_base_/default_runtime.py'
]
crop_size = {{_base_.crop_size}}  # the dataset's random crop
model = dict(
    pretrained='pretrained/open_clip/ViT-B-16_laion2b_s34b_b88k.safetensors',  # both towers
    data_preprocessor=dict(size=crop_size))
