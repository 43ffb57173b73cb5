# CLIP ViT-B/16 trained from OpenAI's initialisation with the CLIP paper's optimiser settings.
_base_ = ['./clip_vit-b-16_8xb128-10k_image-text-224x224.py']
model = dict(pretrained=None)
optim_wrapper = dict(optimizer=dict(lr=5e-4, weight_decay=0.2))  # CLIP paper, ViT-B
