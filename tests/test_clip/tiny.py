"""Tiny CLIP configurations and helpers shared by the CLIP tests (CPU, milliseconds each)."""
import torch

from denseclip.clip import CLIP

#: Text tower as in OpenAI's CLIP but narrow: width 64 (one head), two layers.
TEXT = dict(context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
            transformer_layers=2)
#: ResNet CLIP, width 8, one block per stage, 64 px (2 x 2 final grid).
TINY_RN = dict(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=8,
               vision_patch_size=None, **TEXT)
#: ViT CLIP, width 64, two layers, patch 16, 64 px (4 x 4 grid).
TINY_VIT = dict(embed_dim=32, image_resolution=64, vision_layers=2, vision_width=64,
                vision_patch_size=16, **TEXT)


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturbs every float parameter and BN statistic so that no tensor keeps its init value.

    Zero biases and unit BN statistics would hide a key that silently failed to load.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():
            if name.endswith('num_batches_tracked'):
                tensor.fill_(int(torch.randint(1, 1000, (), generator=generator)))
            elif name.endswith('running_var'):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif tensor.is_floating_point():
                tensor.add_(0.02 * torch.randn(tensor.shape, generator=generator))
    return module


def make_clip(config: dict, seed: int = 0) -> CLIP:
    torch.manual_seed(seed)
    return randomize_(CLIP(**config), seed).eval()
