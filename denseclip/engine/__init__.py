"""Robust training: safe checkpoint loading, atomic checkpoints, exact resume, NaN guard, and
the released learning-rate schedule.

Importing this package (``import denseclip`` does) registers the hooks, the scheduler and the
``atomic_local`` file backend, and changes nothing else: the tools make mmengine load every
checkpoint with ``weights_only=True`` by calling :func:`denseclip.engine.safe_load.install`
explicitly. See ``docs/robustness.md``.
"""
from . import safe_load
from .atomic_io import AtomicLocalBackend, atomic_write, remove_partial_files
from .hooks import (AtomicCheckpointHook, IterationSeedHook, NaNGuardHook, NonFiniteLossError,
                    NonFiniteWeightsError)
from .resume import checkpoint_problem, configure_resume, find_resume_checkpoint
from .safe_load import load_from_local_weights_only, weights_only_load
from .schedulers import WarmupPolyLR

__all__ = [
    'AtomicCheckpointHook', 'AtomicLocalBackend', 'IterationSeedHook', 'NaNGuardHook',
    'NonFiniteLossError', 'NonFiniteWeightsError', 'WarmupPolyLR', 'atomic_write',
    'checkpoint_problem', 'configure_resume', 'find_resume_checkpoint',
    'load_from_local_weights_only', 'remove_partial_files', 'weights_only_load'
]
