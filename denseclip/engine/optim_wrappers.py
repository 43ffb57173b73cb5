"""Mixed precision for ``tools/train.py --amp`` on GPUs (fp16) and CPUs (bfloat16).

mmengine's ``AmpOptimWrapper`` asserts that a GPU (or NPU/MLU/MUSA) is present and builds a
CUDA ``GradScaler``, so it cannot even be constructed on a CPU-only machine. CPU autocast
supports bfloat16 only, and bfloat16 has float32's exponent range, so no loss scaling is
needed: :class:`BFloat16OptimWrapper` is a plain ``OptimWrapper`` that runs the forward pass
under ``autocast(dtype=torch.bfloat16)``.
"""
import logging
from contextlib import contextmanager

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.runner.amp import autocast
from mmseg.registry import OPTIM_WRAPPERS

from .device import warn_if_bf16_emulated

AMP_WRAPPERS = ('AmpOptimWrapper', 'BFloat16OptimWrapper')


@OPTIM_WRAPPERS.register_module()
class BFloat16OptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward pass autocasts to bfloat16 (no loss scaling)."""

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), autocast(dtype=torch.bfloat16):
            yield


def amp_to_bf16(cfg: Config) -> None:
    """Replace an ``AmpOptimWrapper`` (CUDA only) in ``cfg`` by bfloat16 autocast."""
    optim_wrapper = cfg.optim_wrapper
    if optim_wrapper.get('type') != 'AmpOptimWrapper':
        return
    for key in ('loss_scale', 'dtype', 'use_fsdp'):
        optim_wrapper.pop(key, None)
    optim_wrapper.type = 'BFloat16OptimWrapper'
    print_log('CUDA is unavailable: AmpOptimWrapper -> BFloat16OptimWrapper '
              '(bfloat16 autocast, no loss scaling)', logger='current')
    warn_if_bf16_emulated('cpu', 'AMP training')


def enable_amp(cfg: Config) -> None:
    """Switch ``cfg.optim_wrapper`` to mixed precision: fp16 with dynamic loss scaling on
    GPUs (mmengine's ``AmpOptimWrapper``), bfloat16 autocast on CPUs."""
    wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper_type in AMP_WRAPPERS:
        print_log('AMP training is already enabled in your config.',
                  logger='current', level=logging.WARNING)
    elif wrapper_type != 'OptimWrapper':
        raise ValueError('`--amp` needs `optim_wrapper.type` to be '
                         f"'OptimWrapper', but got {wrapper_type!r}")
    else:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if not torch.cuda.is_available():
        amp_to_bf16(cfg)
