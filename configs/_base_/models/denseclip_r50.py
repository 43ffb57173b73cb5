# DenseCLIP (post-model prompting) with CLIP's ResNet-50 and Semantic FPN.
# class_names default to the dataset's metainfo (filled in by the tools); the heads'
# num_classes and the neck's extra score-map channels are derived from them. Every width of
# the text branch is derived too: the backbone's output_dim (the CLIP embedding width) is the
# text encoder's embed_dim and the visual_dim of the context decoder and the pre-model
# prompter; the prompter's num_contexts and text_width come from the text encoder.
_base_ = ['./fpn_clip_r50.py']
model = dict(
    type='DenseCLIP',
    pretrained='pretrained/RN50.pt',  # both towers; see pretrained/README.md
    class_names=None,
    context_length=5,  # name tokens incl. SOS/EOS; 13 - 5 = 8 learnable contexts
    prompting='post',
    tau=0.07,
    score_concat_index=3,  # C5: 2048 + K channels into the neck
    backbone=dict(
        _delete_=True,
        type='CLIPResNetWithAttention',
        layers=(3, 4, 6, 3),
        output_dim=1024,  # RN50's attention-pool (= text embedding) width
        input_resolution=512),
    text_encoder=dict(
        type='CLIPTextContextEncoder',
        context_length=13,  # CLIP's 77 positions truncated: 8 contexts + 5 name tokens
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=12),
    context_decoder=dict(
        type='ContextDecoder',
        transformer_width=256,
        transformer_heads=4,
        transformer_layers=3,
        dropout=0.1),
    pre_prompter=dict(  # used only when prompting includes 'pre'
        type='PreModelPrompter',
        transformer_width=256,
        transformer_heads=4,
        transformer_layers=3,
        dropout=0.1),
    decode_head=dict(num_classes=None),  # derived from class_names
    identity_head=dict(
        type='IdentityHead',
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)))
