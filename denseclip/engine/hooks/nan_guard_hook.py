"""Stop (or skip) a training step whose loss is NaN or Inf, before it reaches the weights."""
import functools
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

ACTIONS = ('stop', 'skip')


class NonFiniteLossError(FloatingPointError):
    """A loss term was NaN or Inf; the optimiser step was not taken."""


@HOOKS.register_module()
class NaNGuardHook(Hook):
    """Checks every loss term between the forward pass and the optimiser step.

    The hook wraps the model's ``parse_losses`` (where mmengine sums the loss terms) and the
    optim wrapper's ``step`` for the duration of training. When a term is not finite:

    - ``action='stop'`` raises :class:`NonFiniteLossError` naming the iteration and the terms,
      before ``backward`` and the step, so the weights in memory and on disk stay finite;
    - ``action='skip'`` runs ``backward`` (keeping DDP's gradient reduction in step) but drops
      the gradients instead of stepping, logs a warning, and stops after
      ``max_consecutive_skips`` skipped iterations in a row.

    In a distributed run the ranks agree (one all-reduce of a flag per iteration): a
    non-finite loss on any rank stops or skips on every rank.

    Args:
        action: ``'stop'`` or ``'skip'``.
        max_consecutive_skips: With ``'skip'``, stop when this many iterations in a row had a
            non-finite loss.
    """

    priority = 'VERY_HIGH'

    def __init__(self, action: str = 'stop', max_consecutive_skips: int = 10):
        if action not in ACTIONS:
            raise ValueError(f'NaNGuardHook: action must be one of {ACTIONS}, got {action!r}')
        if max_consecutive_skips < 1:
            raise ValueError('NaNGuardHook: max_consecutive_skips must be >= 1, got '
                             f'{max_consecutive_skips}')
        self.action = action
        self.max_consecutive_skips = max_consecutive_skips
        self.skipped = 0  # iterations skipped in this run
        self._consecutive = 0
        self._skip_step = False
        self._restore: list = []

    # ----------------------------------------------------------------- installation
    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        parse_losses, step = model.parse_losses, runner.optim_wrapper.step

        def guarded_parse_losses(losses):
            loss, log_vars = parse_losses(losses)
            self._check(runner, log_vars)
            return loss, log_vars

        @functools.wraps(step)  # keeps the schedulers' step counter mark (`_with_counter`)
        def guarded_step(*args, **kwargs):
            if self._skip_step:
                return None  # update_params zeroes the gradients next
            return step(*args, **kwargs)

        model.parse_losses = guarded_parse_losses
        runner.optim_wrapper.step = guarded_step
        self._restore = [(model, 'parse_losses'), (runner.optim_wrapper, 'step')]

    def after_train(self, runner) -> None:
        for owner, name in self._restore:
            owner.__dict__.pop(name, None)  # back to the class's method
        self._restore = []
        if self.skipped:
            runner.logger.warning(f'NaNGuardHook skipped {self.skipped} iterations with a '
                                  'non-finite loss')

    # ----------------------------------------------------------------- the check
    def _check(self, runner, log_vars: dict) -> None:
        terms = {name: value for name, value in log_vars.items()
                 if 'loss' in name and isinstance(value, torch.Tensor)}
        bad = {name: value for name, value in terms.items()
               if not bool(torch.isfinite(value.detach()).all())}
        if not self._all_ranks_finite(not bad, next(iter(terms.values()), None)):
            self._on_non_finite(runner, bad)
        else:
            self._skip_step, self._consecutive = False, 0

    @staticmethod
    def _all_ranks_finite(finite: bool, like: Optional[torch.Tensor]) -> bool:
        _, world_size = get_dist_info()
        if world_size == 1:
            return finite
        device = like.device if like is not None else 'cpu'
        flag = torch.tensor([1 if finite else 0], device=device)
        torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MIN)
        return bool(flag.item())

    def _on_non_finite(self, runner, bad: dict) -> None:
        iteration = runner.iter + 1  # as the log counts: Iter(train) [iteration/max_iters]
        rank, _ = get_dist_info()
        terms = [name for name in bad if name != 'loss'] or list(bad)  # 'loss' is their sum
        where = (', '.join(f'{name}={bad[name].detach().float().mean().item()}'
                           for name in terms)
                 or 'finite here, non-finite on another rank')
        message = f'non-finite loss at iteration {iteration} (rank {rank}): {where}'
        if self.action == 'stop':
            raise NonFiniteLossError(
                f'{message}. Training stopped before the optimiser step, so this iteration '
                'changed no weight and no checkpoint. Lower the learning rate, clip gradients '
                '(optim_wrapper.clip_grad), check the data, or skip such steps '
                '(--cfg-options default_hooks.nan_guard.action=skip); then resume with '
                'tools/train.py --resume.')
        self._skip_step = True
        self._consecutive += 1
        self.skipped += 1
        if self._consecutive >= self.max_consecutive_skips:
            raise NonFiniteLossError(
                f'{message}. The loss has been non-finite for {self._consecutive} iterations in '
                'a row (NaNGuardHook max_consecutive_skips); training stopped. Lower the '
                'learning rate or clip gradients, then resume with tools/train.py --resume.')
        runner.logger.warning(f'{message}; optimiser step skipped')
