"""Tiny configurations shared by the backbone, text-encoder and segmentor tests.

Everything here runs on a CPU in milliseconds: ResNet width 8 with one block per stage, a ViT of
width 64, a text tower of width 32 with one layer, 4 classes, 64 x 96 (non-square) inputs.
Helpers are handed out as fixtures (``make_clip``, ``save_clip``, ``denseclip_cfg`` ...) because
this test folder is not a package.
"""
import copy
from collections.abc import Callable

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

import denseclip  # noqa: F401  (registers the DenseCLIP modules)
from denseclip.clip import CLIP

register_all_modules(init_default_scope=True)
# The tensors here are tiny: one thread is as fast, and several processes sharing the CPU cores
# (pytest-xdist, parallel jobs) would otherwise oversubscribe them (~5x slower when busy).
torch.set_num_threads(1)

#: Four class names of at most 5 tokens each (SOS + names + EOS).
CLASS_NAMES = ('wall', 'building', 'sky', 'floor')
#: Text tower: width 32, 2 heads, 1 layer; 9 positions = 4 contexts + 5 name tokens. Its
#: embed_dim is the backbone's output_dim (32), filled in by DenseCLIP.
TEXT = dict(context_length=9, transformer_width=32, transformer_heads=2, transformer_layers=1)
#: Batch of two non-square images: 64 x 96 gives a 2 x 3 grid at stride 32.
IMAGE_SIZE = (64, 96)


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturbs every float tensor and BN statistic of ``module`` (in place).

    Zero biases, unit norms and BN's (0, 1) statistics would hide a weight that was silently
    not loaded or not used; after this no tensor keeps its initial value.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():
            if name.endswith('num_batches_tracked'):
                tensor.fill_(int(torch.randint(1, 100, (), generator=generator)))
            elif name.endswith('running_var'):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.is_floating_point():
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator))
    return module


@pytest.fixture
def make_clip() -> Callable[..., CLIP]:
    """Builds a tiny, randomised CLIP in eval mode: ``make_clip('resnet' | 'vit', **changes)``.

    ResNet: width 8, one block per stage, 64 px (2 x 2 attention-pool grid, 4 pool heads).
    ViT: width 64, 4 layers, patch 16, 64 px (4 x 4 grid). Both have a 77-position text tower
    of width 32 and embedding dimension 32.
    """
    def build(kind: str = 'resnet', seed: int = 0, **changes) -> CLIP:
        config = dict(embed_dim=32, image_resolution=64, context_length=77, vocab_size=49408,
                      transformer_width=32, transformer_heads=2, transformer_layers=1)
        if kind == 'resnet':
            config.update(vision_layers=(1, 1, 1, 1), vision_width=8, vision_patch_size=None)
        else:
            config.update(vision_layers=4, vision_width=64, vision_patch_size=16)
        config.update(changes)
        torch.manual_seed(seed)
        return randomize_(CLIP(**config), seed).eval()
    return build


@pytest.fixture
def save_clip(tmp_path) -> Callable[[CLIP, str], str]:
    """Saves a CLIP's plain state dict under ``tmp_path`` and returns the path."""
    def save(model: CLIP, name: str = 'clip.pth') -> str:
        path = tmp_path / name
        torch.save(model.state_dict(), path)
        return str(path)
    return save


@pytest.fixture
def randomize() -> Callable[..., torch.nn.Module]:
    return randomize_


def _denseclip_cfg(prompting: str = 'post', **changes) -> ConfigDict:
    """A tiny DenseCLIP (ResNet width 8, text width 32, FPN width 16) as an mmengine config.

    Each width is stated once, as in the configs: the embedding width 32 is the backbone's
    ``output_dim``; the text encoder, context decoder and pre-model prompter get it (and the
    number and width of the contexts) from DenseCLIP.
    """
    cfg = dict(
        type='DenseCLIP',
        class_names=list(CLASS_NAMES),
        prompting=prompting,
        backbone=dict(type='CLIPResNetWithAttention', layers=(1, 1, 1, 1), width=8,
                      output_dim=32, input_resolution=64),
        text_encoder=dict(type='CLIPTextContextEncoder', **TEXT),
        neck=dict(type='FPN', in_channels=[32, 64, 128, 256], out_channels=16, num_outs=4),
        decode_head=dict(type='FPNHead', in_channels=[16] * 4, in_index=[0, 1, 2, 3],
                         feature_strides=[4, 8, 16, 32], channels=16, dropout_ratio=0.0,
                         norm_cfg=dict(type='BN'), align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        identity_head=dict(type='IdentityHead', align_corners=False,
                           loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4)),
        test_cfg=dict(mode='whole'))
    if 'post' in prompting:
        cfg['context_decoder'] = dict(type='ContextDecoder', transformer_width=16,
                                      transformer_heads=2, transformer_layers=1, dropout=0.0)
    if 'pre' in prompting:
        cfg['pre_prompter'] = dict(type='PreModelPrompter', transformer_width=16,
                                   transformer_heads=2, transformer_layers=1, dropout=0.0)
    cfg.update(copy.deepcopy(changes))
    return ConfigDict(cfg)


@pytest.fixture
def denseclip_cfg() -> Callable[..., ConfigDict]:
    """``denseclip_cfg(prompting='post', **top_level_changes)`` -> a tiny DenseCLIP config."""
    return _denseclip_cfg


@pytest.fixture
def build_denseclip() -> Callable[..., torch.nn.Module]:
    """Builds a tiny DenseCLIP with randomised weights (so that gamma, BN etc. matter)."""
    from mmseg.registry import MODELS

    def build(prompting: str = 'post', seed: int = 0, **changes) -> torch.nn.Module:
        torch.manual_seed(seed)
        model = MODELS.build(_denseclip_cfg(prompting, **changes))
        with torch.no_grad():
            if hasattr(model, 'gamma'):
                model.gamma.fill_(0.5)  # 1e-4 would hide the context decoder in comparisons
        return randomize_(model, seed)
    return build


@pytest.fixture
def batch() -> tuple[torch.Tensor, list[SegDataSample]]:
    """Two normalised 64 x 96 images with labels in [0, 4), some pixels ignored (255)."""
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(2, 3, *IMAGE_SIZE, generator=generator)
    samples = []
    for index in range(2):
        label = torch.randint(0, len(CLASS_NAMES), (1, *IMAGE_SIZE), generator=generator)
        label[:, :5 * (index + 1)] = 255
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=label)
        sample.set_metainfo(dict(img_shape=IMAGE_SIZE, ori_shape=IMAGE_SIZE,
                                 pad_shape=IMAGE_SIZE))
        samples.append(sample)
    return inputs, samples
