# Captions of the synthetic scenes (tools/make_synthetic_data.py), e.g. "a photo of a wall and a
# floor.", in data/synthetic/ADEChallengeData2016/captions/{training,validation}.jsonl with image
# paths relative to the dataset folder. Only the training captions are read: the validation
# scenes and the ImageFolder split stay held out for zero-shot evaluation.
_base_ = ['./image_text-224x224.py']
data_root = 'data/synthetic/ADEChallengeData2016'
crop_size = 128  # the scenes' side (make_synthetic_data.py --size): crops of the whole scene
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CLIPRandomResizedCrop', size=crop_size, scale=(0.9, 1.0)),
    dict(type='PackImageTextInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CLIPResizeCenterCrop', size=crop_size),
    dict(type='PackImageTextInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='captions/training.jsonl',
                 pipeline=train_pipeline))
