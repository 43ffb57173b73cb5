# CLIP RN50 trained with its contrastive loss (denseclip.models.CLIPContrastive). `arch` is
# OpenAI's RN50 (denseclip.clip.infer_clip_config of RN50.pt); the state dict is OpenAI's
# prefixed by `clip.`.
model = dict(
    type='CLIPContrastive',
    arch=dict(
        embed_dim=1024,  # the attention pool's output = the joint embedding width
        image_resolution=224,
        vision_layers=(3, 4, 6, 3),
        vision_width=64,
        vision_patch_size=None,  # a ResNet
        context_length=77,
        vocab_size=49408,  # CLIP's byte-pair vocabulary
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=12),
    pretrained='pretrained/RN50.pt',  # fine-tune OpenAI's weights; None trains from scratch
    # CLIP's mean/std and BGR -> RGB are the preprocessor's defaults; captions longer than
    # the 77-token context are cut (as CLIP does); truncate=False makes them an error
    data_preprocessor=dict(truncate=True))
