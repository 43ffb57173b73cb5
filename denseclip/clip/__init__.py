"""Pure-PyTorch CLIP: towers, the CLIP model, checkpoint loading and a strict tokenizer."""
from .checkpoint import build_model, infer_clip_config, load, read_state_dict
from .errors import CheckpointError
from .fit import StateDictFit, check_fit
from .model import CLIP, contrastive_loss
from .resnet import AttentionPool2d, ModifiedResNet, ResNetTrunk
from .text import TextTransformer
from .tokenizer import tokenize
from .vit import VisionTransformer

__all__ = [
    'CLIP', 'AttentionPool2d', 'CheckpointError', 'ModifiedResNet', 'ResNetTrunk', 'StateDictFit',
    'TextTransformer', 'VisionTransformer', 'build_model', 'check_fit', 'contrastive_loss',
    'infer_clip_config', 'load', 'read_state_dict', 'tokenize'
]
