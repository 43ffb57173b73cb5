# Fine-tunes OpenAI's CLIP ViT-B/16 (pretrained/ViT-B-16.pt) on image-caption pairs.
_base_ = [
    '../_base_/models/clip_vit-b-16.py', '../_base_/datasets/image_text-224x224.py',
    '../_base_/schedules/clip_10k_adamw.py', '../_base_/default_runtime.py'
]
optim_wrapper = dict(optimizer=dict(betas=(0.9, 0.98), eps=1e-6))  # CLIP paper, ViTs
