# Image-caption pairs for contrastive CLIP training (denseclip.datasets.ImageTextDataset):
# data/image_text/{train,val}.jsonl with lines {"image": "images/0001.jpg", "caption": "..."}
# (or .csv files with the header `image,caption`); image paths are relative to data_root.
dataset_type = 'ImageTextDataset'
data_root = 'data/image_text'
crop_size = 224  # CLIP's input resolution
train_pipeline = [
    dict(type='LoadImageFromFile'),
    # CLIP's only augmentation is a random square crop of the resized image; a crop of 90-100%
    # of the area as in open_clip (see denseclip/datasets/transforms.py)
    dict(type='CLIPRandomResizedCrop', size=crop_size, scale=(0.9, 1.0)),
    dict(type='PackImageTextInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CLIPResizeCenterCrop', size=crop_size),  # CLIP's evaluation preprocessing
    dict(type='PackImageTextInputs'),
]
train_dataloader = dict(
    batch_size=128,  # per GPU; the loss contrasts the pairs of all GPUs (8 x 128)
    num_workers=8,
    persistent_workers=True,
    drop_last=True,  # every rank gathers the same number of pairs
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type, data_root=data_root, ann_file='train.jsonl',
        pipeline=train_pipeline))
# No validation loop: contrastive training is judged by zero-shot evaluation of the saved
# checkpoints. `test_pipeline` reads a held-out file (ann_file='val.jsonl') the same way.
