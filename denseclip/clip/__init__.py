"""Pure-PyTorch CLIP: towers, the CLIP model, reading and loading weights, a strict tokenizer."""
from .checkpoint import build_model, infer_clip_config, load
from .class_names import check_class_names
from .errors import CheckpointError
from .fit import StateDictFit, check_fit
from .model import CLIP, contrastive_loss
from .preprocess import CLIP_MEAN, CLIP_STD, read_image_rgb
from .reading import clip_state_dict, read_clip_weights, read_state_dict
from .resnet import AttentionPool2d, ModifiedResNet, ResNetTrunk
from .text import TextTransformer
from .tokenizer import tokenize
from .vit import VisionTransformer
from .zero_shot import PHOTO_TEMPLATES, ZeroShotClassifier, build_classifier, read_templates

__all__ = [
    'AttentionPool2d', 'CLIP', 'CLIP_MEAN', 'CLIP_STD', 'CheckpointError', 'ModifiedResNet',
    'PHOTO_TEMPLATES', 'ResNetTrunk', 'StateDictFit', 'TextTransformer', 'VisionTransformer',
    'ZeroShotClassifier', 'build_classifier', 'build_model', 'check_class_names', 'check_fit',
    'clip_state_dict', 'contrastive_loss', 'infer_clip_config', 'load', 'read_clip_weights',
    'read_image_rgb', 'read_state_dict', 'read_templates', 'tokenize'
]
