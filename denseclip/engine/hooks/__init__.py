"""Runner hooks, registered in mmseg's ``HOOKS``: atomic checkpoints (which also save and stop
on SIGTERM / SIGINT), NaN guard, seeding, and
the opt-in fast paths (channels-last, ``torch.compile`` of the image path)."""
from .checkpoint_hook import AtomicCheckpointHook, NonFiniteWeightsError, TrainingInterrupted
from .fast_path_hooks import (ChannelsLastHook, CompileSubmodulesHook, compile_submodules,
                              to_channels_last)
from .nan_guard_hook import NaNGuardHook, NonFiniteLossError
from .seed_hook import IterationSeedHook

__all__ = [
    'AtomicCheckpointHook', 'ChannelsLastHook', 'CompileSubmodulesHook', 'IterationSeedHook',
    'NaNGuardHook', 'NonFiniteLossError', 'NonFiniteWeightsError', 'compile_submodules',
    'to_channels_last', 'TrainingInterrupted'
]
