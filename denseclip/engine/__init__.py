"""What plugs into mmengine's runner: safe checkpoint loading, atomic checkpoints, exact
resume, one run per work dir, stopping on SIGTERM, NaN guard, the released learning-rate
schedule, mixed precision on CPUs, CPU (distributed) runs, the fast-path hooks, the training
visualiser and the console filters.

Importing this package (``import denseclip`` does) registers the hooks, the optimiser wrapper,
the scheduler, the visualiser and the ``atomic_local`` file backend, and changes nothing else:
the tools make mmengine load every checkpoint with ``weights_only=True`` by calling
:func:`denseclip.engine.safe_load.install` explicitly (through
:func:`denseclip.engine.config.prepare_config`). See ``docs/robustness.md``.

``denseclip.engine.config`` (the one config preparation of every entry point) is imported by
the entry points themselves: it builds on ``denseclip.datasets``, and the package stays cheap.
"""
from . import safe_load
from .atomic_io import AtomicLocalBackend, atomic_write, remove_partial_files
from .console import KnownLogRecords, ignore_known_warnings, quiet_imports
from .dist import adapt_cfg_to_cpu, init_cpu_dist, revert_sync_bn_cfg
from .hooks import (AtomicCheckpointHook, ChannelsLastHook, CompileSubmodulesHook,
                    IterationSeedHook, NaNGuardHook, NonFiniteLossError, NonFiniteWeightsError,
                    TrainingInterrupted, compile_submodules, to_channels_last)
from .optim_wrappers import BFloat16OptimWrapper, amp_to_bf16, enable_amp
from .resume import checkpoint_problem, configure_resume, find_resume_checkpoint
from .safe_load import load_from_local_weights_only, weights_only_load
from .schedulers import WarmupPolyLR
from .visualizer import SegVisualizer
from .workdir import WorkDirBusyError, WorkDirLockHook, lock_work_dir, unlock_work_dir

__all__ = [
    'AtomicCheckpointHook', 'AtomicLocalBackend', 'BFloat16OptimWrapper', 'ChannelsLastHook',
    'CompileSubmodulesHook', 'IterationSeedHook', 'KnownLogRecords', 'NaNGuardHook',
    'NonFiniteLossError', 'NonFiniteWeightsError', 'SegVisualizer', 'TrainingInterrupted',
    'WarmupPolyLR', 'WorkDirBusyError', 'WorkDirLockHook',
    'adapt_cfg_to_cpu', 'amp_to_bf16', 'atomic_write', 'checkpoint_problem',
    'compile_submodules', 'configure_resume', 'enable_amp', 'find_resume_checkpoint',
    'ignore_known_warnings', 'init_cpu_dist', 'load_from_local_weights_only', 'quiet_imports',
    'lock_work_dir', 'remove_partial_files', 'revert_sync_bn_cfg', 'to_channels_last',
    'unlock_work_dir', 'weights_only_load'
]
