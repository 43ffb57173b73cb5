# CLIP ViT-B/16 trained with its contrastive loss: OpenAI's ViT-B/16 (`arch` as
# denseclip.clip.infer_clip_config reads it from ViT-B-16.pt) with the text tower of clip_r50.py.
_base_ = ['./clip_r50.py']
model = dict(
    arch=dict(
        embed_dim=512,
        vision_layers=12,
        vision_width=768,  # 12 heads of 64
        vision_patch_size=16),
    pretrained='pretrained/ViT-B-16.pt')
