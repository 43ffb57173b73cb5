"""IterationSeedHook when the train loop skips resumed batches by loading them (upstream
mmengine 0.10.x): the first trained batch still draws from its own iteration's seed."""
import random
from types import SimpleNamespace

import numpy as np

from denseclip.engine import IterationSeedHook
from denseclip.engine.hooks.seed_hook import iteration_seeds


def draws(iterator, count: int) -> list[float]:
    """Loads ``count`` 'batches', each drawing its augmentation from ``random`` and numpy."""
    return [next(iterator) + random.random() + np.random.rand() for _ in range(count)]


def test_reseeds_after_the_skipped_batches_are_loaded():
    loop = SimpleNamespace(dataloader_iterator=iter(range(100)))
    runner = SimpleNamespace(seed=7, iter=3, train_loop=loop)
    IterationSeedHook().before_train(runner)
    draws(loop.dataloader_iterator, 3)  # the loop's skip: batches 0, 1, 2 are loaded
    first = draws(loop.dataloader_iterator, 1)[0]  # batch 3, the first one trained

    py_seed, np_seed, _ = iteration_seeds(7, 3, 0)
    random.seed(py_seed)
    np.random.seed(np_seed)
    assert first == 3 + random.random() + np.random.rand()


def test_leaves_an_iterator_that_skips_by_itself_alone():
    """OneDL's mmengine advances the sampler instead (``skip_iter``): nothing to wrap."""
    iterator = SimpleNamespace(skip_iter=lambda n: None)
    runner = SimpleNamespace(seed=7, iter=3, train_loop=SimpleNamespace(
        dataloader_iterator=iterator))
    IterationSeedHook().before_train(runner)
    assert runner.train_loop.dataloader_iterator is iterator
