"""Opt-in speed-ups that leave the model's outputs unchanged: channels-last memory layout and
``torch.compile`` of the image path.

Both come as a function (for scripts and ``tools/benchmark.py``) and as an mmengine hook (for
``tools/train.py`` / ``tools/test.py`` through the config)::

    custom_hooks = [dict(type='ChannelsLastHook'),
                    dict(type='CompileSubmodulesHook')]

Mixed precision is not here: it is mmengine's (``tools/train.py --amp``, see
``denseclip/engine/optim_wrappers.py``; for testing ``--cfg-options test_cfg.fp16=True``).
Batched sliding-window inference is a model setting (``model.test_cfg.slide_batch_size``, see
``denseclip/models/slide.py``).
"""
from collections.abc import Sequence

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS
from torch import nn

#: The parts whose work is image-sized; the text branch is cached or tiny.
IMAGE_PATH = ('backbone', 'neck', 'decode_head')


def to_channels_last(model: nn.Module) -> nn.Module:
    """Stores every 4-D parameter and buffer (convolution weights) channels-last, in place.

    Convolutions then produce channels-last (NHWC) activations, which oneDNN and cuDNN run
    faster for ResNets; results equal the NCHW ones up to floating-point reassociation.
    """
    return model.to(memory_format=torch.channels_last)


def compile_submodules(model: nn.Module, names: Sequence[str] = IMAGE_PATH,
                       **compile_kwargs) -> list[str]:
    """``torch.compile``s the named children of ``model`` in place (``nn.Module.compile``).

    Only the image path is compiled by default: the text cache and mmseg's data handling stay
    eager, and so does the optimiser step (mmengine's ``compile=True`` compiles the whole
    ``train_step``, optimiser included). Returns the names that were compiled.
    """
    compiled = []
    for name in names:
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            module.compile(**compile_kwargs)
            compiled.append(name)
    return compiled


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Converts the model to channels-last before training, validation or testing starts."""

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        to_channels_last(_unwrap(runner.model))
        print_log('ChannelsLastHook: 4-D weights stored channels-last', logger='current')


@HOOKS.register_module()
class CompileSubmodulesHook(Hook):
    """``torch.compile``s the image path (backbone, neck, decode head) before the run.

    Args:
        names: Children of the segmentor to compile.
        **compile_kwargs: Passed to ``torch.compile`` (``backend``, ``mode``, ...).
    """

    priority = 'VERY_LOW'

    def __init__(self, names: Sequence[str] = IMAGE_PATH, **compile_kwargs):
        self.names = tuple(names)
        self.compile_kwargs = compile_kwargs

    def before_run(self, runner) -> None:
        compiled = compile_submodules(_unwrap(runner.model), self.names, **self.compile_kwargs)
        print_log(f'CompileSubmodulesHook: compiled {", ".join(compiled)}; the first '
                  'iterations are slow', logger='current')
