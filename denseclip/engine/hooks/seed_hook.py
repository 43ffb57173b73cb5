"""Per-iteration seeding, so that a resumed run draws the same random numbers as an
uninterrupted one."""
import random

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmseg.registry import HOOKS


def iteration_seeds(seed: int, iteration: int, rank: int) -> tuple[int, int, int]:
    """Independent seeds for Python's ``random``, numpy and torch at one iteration."""
    state = np.random.SeedSequence([seed % 2**63, iteration, rank]).generate_state(4, np.uint32)
    return int(state[0]), int(state[1]), (int(state[2]) << 32) | int(state[3])


class _ReseedAfterSkip:
    """The train loop's data iterator, reseeding the host generators once the batches that a
    resumed run skips have been loaded, just before the first batch it trains on.

    Upstream mmengine 0.10.x skips them by loading them (its data iterator has no
    ``skip_iter``), which draws the skipped batches' augmentations from the generators that
    :meth:`IterationSeedHook.before_train` had just seeded for the first trained iteration.
    """

    def __init__(self, iterator, skipped: int, reseed):
        self._iterator, self._left, self._reseed = iterator, skipped, reseed

    def __next__(self):
        if self._left == 0:
            self._reseed()
        self._left -= 1
        return next(self._iterator)

    def __getattr__(self, name: str):
        return getattr(self._iterator, name)


@HOOKS.register_module()
class IterationSeedHook(Hook):
    """Reseeds the random generators from ``(runner.seed, iteration, rank)`` at every iteration.

    mmengine seeds the generators once, when the runner starts. On ``--resume`` they restart
    from that seed instead of continuing where the killed job was, so the data augmentation
    (numpy / ``random`` in the main process) and the dropout and drop-path masks (torch) of
    every later iteration differ from an uninterrupted run. With this hook the random state of
    iteration ``i`` depends on ``i`` only:

    - ``random`` and numpy, which the transforms draw from while the batch of iteration ``i`` is
      loaded, are reseeded before that happens: when training starts or resumes, after each
      iteration and after each validation;
    - torch, which the forward pass draws from, is reseeded just before the iteration runs
      (after the batch is loaded: creating a data-loader iterator also draws from it).

    Transforms running in data-loader workers (``num_workers > 0``) draw from the workers' own
    generators, which mmengine seeds when the workers start: after a resume the sample order
    is exact, their augmentation draws are not.
    """

    priority = 'LOWEST'  # after every other hook of the same stage has drawn what it needs

    def __init__(self):
        self._training = False

    def _seed_host(self, runner, iteration: int) -> None:
        py_seed, np_seed, _ = iteration_seeds(runner.seed, iteration, get_dist_info()[0])
        random.seed(py_seed)
        np.random.seed(np_seed)

    def before_train(self, runner) -> None:
        self._training = True
        self._seed_host(runner, runner.iter)  # 0, or the iteration resumed from
        loop = runner.train_loop
        iterator = getattr(loop, 'dataloader_iterator', None)
        if runner.iter > 0 and iterator is not None and not hasattr(iterator, 'skip_iter'):
            loop.dataloader_iterator = _ReseedAfterSkip(
                iterator, runner.iter, lambda: self._seed_host(runner, runner.iter))

    def after_train(self, runner) -> None:
        self._training = False

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._seed_host(runner, runner.iter + 1)  # the loop increments runner.iter after this

    def after_val(self, runner) -> None:
        if self._training:  # (runner.iter would build the train loop of a test-only run)
            self._seed_host(runner, runner.iter)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        torch.manual_seed(iteration_seeds(runner.seed, runner.iter, get_dist_info()[0])[2])
