# Fine-tunes OpenAI's CLIP RN50 (pretrained/RN50.pt) on image-caption pairs with CLIP's
# contrastive loss over the global batch of 8 GPUs x 128 pairs.
_base_ = [
    '../_base_/models/clip_r50.py', '../_base_/datasets/image_text-224x224.py',
    '../_base_/schedules/clip_10k_adamw.py', '../_base_/default_runtime.py'
]
