"""Training hooks, registered in mmseg's ``HOOKS``: atomic checkpoints, NaN guard, seeding."""
from .checkpoint_hook import AtomicCheckpointHook, NonFiniteWeightsError
from .nan_guard_hook import NaNGuardHook, NonFiniteLossError
from .seed_hook import IterationSeedHook

__all__ = [
    'AtomicCheckpointHook', 'IterationSeedHook', 'NaNGuardHook', 'NonFiniteLossError',
    'NonFiniteWeightsError'
]
