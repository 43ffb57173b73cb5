# DenseCLIP with open_clip's ViT-L/14 trained on LAION-2B
# (laion/CLIP-ViT-L-14-laion2B-s32B-b82K, downloaded by hand: docs/open_clip.md)
# + Semantic FPN on ADE20K, 80k iterations on 8 GPUs x 4 images.
_base_ = [
    '../_base_/models/denseclip_openclip_vit-l-14.py', '../_base_/datasets/ade20k_clip-512x512.py',
    '../_base_/schedules/schedule_80k_adamw.py', '../_base_/default_runtime.py'
]
crop_size = {{_base_.crop_size}}  # the dataset's random crop
model = dict(
    pretrained='pretrained/open_clip/ViT-L-14_laion2b_s32b_b82k.safetensors',  # both towers
    # this checkpoint was trained on images normalised with 0.5 / 0.5, not OpenAI's statistics
    # (open_clip.get_pretrained_cfg('ViT-L-14', 'laion2b_s32b_b82k')); on 0-255 RGB
    data_preprocessor=dict(size=crop_size, mean=[0.5 * 255] * 3, std=[0.5 * 255] * 3))
