"""The learning-rate schedule of the released DenseCLIP code (mmcv 1.x), as one mmengine scheduler.

mmcv 1.x computed the poly learning rate from each group's base lr and then multiplied it by the
linear warm-up factor. mmengine's ``LinearLR`` + ``PolyLR`` chain cannot express that product:
``PolyLR`` applies ``eta_min`` to the lr that the warm-up has already scaled (pushing a small lr
up), ``LinearLR(end=n)`` reaches factor 1 at ``n - 1`` and ``PolyLR(end=T)`` reaches ``eta_min``
one step early. With the paper's settings the backbone's lr came out 1.2 % too high for the
whole run. :class:`WarmupPolyLR` computes the released formula in closed form instead.
"""
from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import _ParamScheduler
from mmengine.registry import PARAM_SCHEDULERS


@PARAM_SCHEDULERS.register_module()
class WarmupPolyLR(LRSchedulerMixin, _ParamScheduler):
    """Poly decay to ``eta_min`` times a linear warm-up factor, per parameter group.

    At step ``t`` (counted from ``begin``; the lr in effect during iteration ``t``), for a group
    whose base lr is ``b`` (the optimiser's lr times the group's ``lr_mult``)::

        poly(t) = (b - eta_min) * (1 - t / T) ** power + eta_min,   T = end - begin
        w(t)    = 1 - (1 - t / warmup_iters) * (1 - warmup_ratio)   if t < warmup_iters else 1
        lr(t)   = w(t) * poly(t)

    which is mmcv 1.x's ``PolyLrUpdaterHook(power, min_lr=eta_min, by_epoch=False)`` with
    ``warmup='linear'``: ``eta_min`` is an absolute lr shared by every group (so a group with
    ``lr_mult=0`` still rises towards ``eta_min``), and the warm-up scales the decayed lr.

    Args:
        optimizer: The wrapped optimiser (filled in by the runner).
        power: Exponent of the poly decay.
        eta_min: The lr that every group decays to at ``end`` (mmcv's ``min_lr``).
        warmup_iters: Length of the linear warm-up in steps; 0 disables it.
        warmup_ratio: Warm-up factor at step 0.
        begin: First step of the schedule.
        end: The step at which ``poly`` reaches ``eta_min`` (the run's ``max_iters``).
        last_step: For resuming without a state dict, as in mmengine's schedulers.
        by_epoch: Whether steps are epochs; DenseCLIP counts iterations.
        verbose: Log every update.
    """

    def __init__(self,
                 optimizer,
                 *,
                 power: float = 0.9,
                 eta_min: float = 1e-6,
                 warmup_iters: int = 1500,
                 warmup_ratio: float = 1e-6,
                 begin: int = 0,
                 end: int,
                 last_step: int = -1,
                 by_epoch: bool = False,
                 verbose: bool = False):
        if warmup_iters < 0 or warmup_iters > end - begin:
            raise ValueError(f'param_scheduler: warmup_iters={warmup_iters} must lie in '
                             f'[0, end - begin = {end - begin}]')
        if not 0 < warmup_ratio <= 1:
            raise ValueError(f'param_scheduler: warmup_ratio={warmup_ratio} must lie in (0, 1]')
        self.power = power
        self.eta_min = eta_min
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        self.total_iters = end - begin
        super().__init__(optimizer, begin=begin, end=end, last_step=last_step,
                         by_epoch=by_epoch, verbose=verbose)

    def warmup_factor(self, step: int) -> float:
        """The linear warm-up factor ``w(step)``."""
        if step >= self.warmup_iters:
            return 1.0
        return 1 - (1 - step / self.warmup_iters) * (1 - self.warmup_ratio)

    def _get_value(self) -> list[float]:
        """The closed form at ``self.last_step``; it does not read the current lr."""
        step = self.last_step
        decay = (1 - step / self.total_iters)**self.power
        warmup = self.warmup_factor(step)
        return [warmup * ((base - self.eta_min) * decay + self.eta_min)
                for base in self.base_values]


def scale_schedule(cfg, max_iters: int) -> list[str]:
    """Shortens (or lengthens) an iteration-based run to ``max_iters``, the whole schedule
    with it: ``tools/train.py --max-iters N``.

    Every step count of the run is multiplied by ``max_iters / train_cfg.max_iters`` and
    rounded: the schedulers' ``begin`` / ``end`` (the end of the run stays the end of the
    run) and ``warmup_iters``, the validation, checkpoint and log intervals (at least 1). A
    20-iteration smoke run of the 80k recipe thus warms up for 0 iterations instead of
    keeping the 1 500 of the paper, and logs every iteration.

    Args:
        cfg: The prepared config, changed in place.
        max_iters: The new length, ``>= 1``.

    Returns:
        One ``key: old -> new`` line per changed value.

    Raises:
        ValueError: ``max_iters < 1``, or the run counts epochs.
    """
    if not isinstance(max_iters, int) or max_iters < 1:
        raise ValueError(f'--max-iters {max_iters!r}: expected an integer >= 1')
    train = cfg.get('train_cfg') or {}
    old = train.get('max_iters')
    if old is None or train.get('by_epoch') or 'max_epochs' in train:
        raise ValueError('--max-iters scales iteration-based runs; this config sets no '
                         'train_cfg.max_iters')
    changes = []

    def scaled(owner: dict, key: str, name: str, at_least: int = 0) -> None:
        value = owner.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return
        new = value if value == -1 else max(at_least, round(value * max_iters / old))
        if value == old and key in ('end', 'max_iters'):
            new = max_iters  # the end of the run stays the end of the run
        if new != value:
            owner[key] = new
            changes.append(f'{name}: {value} -> {new}')

    if (cfg.get('optim_wrapper') or {}).get('accumulative_counts', 1) > 1:
        raise ValueError('--max-iters does not rescale a gradient-accumulation schedule (its '
                         'steps are offset by the accumulation); use the 8-GPU config or set '
                         'the steps with --cfg-options')
    schedulers = cfg.get('param_scheduler') or []
    schedulers = [schedulers] if isinstance(schedulers, dict) else list(schedulers)
    kept = []
    for index, scheduler in enumerate(schedulers):
        if scheduler.get('by_epoch', True) and scheduler.get('type') != 'WarmupPolyLR':
            raise ValueError(f'--max-iters: param_scheduler[{index}] counts epochs; scale '
                             'it yourself with --cfg-options')
        for key in ('begin', 'end', 'warmup_iters'):
            scaled(scheduler, key, f'param_scheduler[{index}].{key}')
        if scheduler.get('end', max_iters) <= scheduler.get('begin', 0):
            changes.append(f'param_scheduler[{index}] ({scheduler.get("type")}): dropped, '
                           'shorter than one iteration')
        else:
            kept.append(scheduler)
    if schedulers:
        cfg.param_scheduler = kept
    scaled(train, 'max_iters', 'train_cfg.max_iters', 1)
    scaled(train, 'val_interval', 'train_cfg.val_interval', 1)
    hooks = cfg.get('default_hooks') or {}
    for hook in ('checkpoint', 'logger'):
        scaled(hooks.get(hook) or {}, 'interval', f'default_hooks.{hook}.interval', 1)
    return changes
