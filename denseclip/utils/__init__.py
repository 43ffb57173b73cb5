"""Run-time helpers for the tools: class names, CPU (distributed) runs, mixed precision,
opt-in fast paths. ``flops`` (fvcore) and ``benchmark`` are imported by the tools on demand."""
from .amp import BFloat16OptimWrapper, amp_to_bf16, enable_amp
from .class_names import dataset_class_names, fill_class_names
from .dist import adapt_cfg_to_cpu, init_cpu_dist, revert_sync_bn_cfg
from .fast_paths import (ChannelsLastHook, CompileSubmodulesHook, compile_submodules,
                         to_channels_last)

__all__ = [
    'BFloat16OptimWrapper', 'ChannelsLastHook', 'CompileSubmodulesHook', 'adapt_cfg_to_cpu',
    'amp_to_bf16', 'compile_submodules', 'dataset_class_names', 'enable_amp',
    'fill_class_names', 'init_cpu_dist', 'revert_sync_bn_cfg', 'to_channels_last'
]
