# DenseCLIP with open_clip's ConvNeXt-B (wide) CLIP trained on LAION-2B
# (laion/CLIP-convnext_base_w-laion2B-s13B-b82K, downloaded by hand: docs/open_clip.md)
# + Semantic FPN on ADE20K, 80k iterations on 8 GPUs x 4 images.
_base_ = [
    '../_base_/models/denseclip_openclip_convnext-b-w.py',
    '../_base_/datasets/ade20k_clip-512x512.py',
    '../_base_/schedules/schedule_80k_adamw.py', '../_base_/default_runtime.py'
]
crop_size = {{_base_.crop_size}}  # the dataset's random crop
model = dict(
    pretrained='pretrained/open_clip/convnext_base_w_laion2b_s13b_b82k.safetensors',  # both towers
    data_preprocessor=dict(size=crop_size))
