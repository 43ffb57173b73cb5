"""Run-time helpers for the tools: class names, CPU (distributed) runs, mixed precision,
opt-in fast paths, known-harmless console messages. ``flops`` (fvcore) and ``benchmark`` are
imported by the tools on demand."""
from .amp import BFloat16OptimWrapper, amp_to_bf16, enable_amp
from .class_names import dataset_class_names, fill_class_names
from .console import KnownLogRecords, ignore_known_warnings, quiet_imports
from .dist import adapt_cfg_to_cpu, init_cpu_dist, revert_sync_bn_cfg
from .fast_paths import (ChannelsLastHook, CompileSubmodulesHook, compile_submodules,
                         to_channels_last)

__all__ = [
    'BFloat16OptimWrapper', 'ChannelsLastHook', 'CompileSubmodulesHook', 'KnownLogRecords',
    'adapt_cfg_to_cpu', 'amp_to_bf16', 'compile_submodules', 'dataset_class_names',
    'enable_amp', 'fill_class_names', 'ignore_known_warnings', 'init_cpu_dist',
    'quiet_imports', 'revert_sync_bn_cfg', 'to_channels_last'
]
