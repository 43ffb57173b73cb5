"""mmengine's CheckpointHook, made safe against jobs killed at any moment."""
import logging
import os.path as osp
import signal
import threading
from typing import Optional

import torch
from mmengine.dist import all_reduce, get_dist_info, is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmseg.registry import HOOKS

from denseclip.clip.reading import non_finite_tensors

from ..atomic_io import ATOMIC_BACKEND, atomic_write, remove_partial_files
from ..workdir import holds_work_dir


class NonFiniteWeightsError(FloatingPointError):
    """The model holds NaN or Inf weights; they are never written to a checkpoint."""


class TrainingInterrupted(RuntimeError):
    """Training stopped on SIGTERM / SIGINT after saving a checkpoint to resume from.

    Attributes:
        signum: The signal; a tool exits with ``128 + signum`` as a shell does.
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


#: Signals after which training saves a checkpoint and stops: SLURM's and the batch systems'
#: warning before a time limit, and Ctrl-C.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def non_finite_entries(state_dict: dict) -> list[str]:
    """Names of the floating-point tensors of ``state_dict`` holding NaN or Inf (the check
    that every reader of checkpoints makes, :func:`denseclip.clip.reading.non_finite_tensors`)."""
    return [name for name, _, _ in non_finite_tensors(state_dict)]


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose files are complete or absent, whenever the job is killed.

    Differs from mmengine's hook in four ways:

    - every checkpoint (``iter_N.pth``, ``best_*.pth``) and ``last_checkpoint`` is written to a
      temporary file, flushed to disk and renamed (:func:`~denseclip.engine.atomic_write`);
    - ``last_checkpoint`` points to the new file only once it is complete, and the oldest of
      ``max_keep_ckpts`` is deleted only after that (mmengine deletes it *before* saving, so a
      kill while saving with ``max_keep_ckpts=1`` lost every checkpoint);
    - a model holding NaN/Inf weights is never written: :class:`NonFiniteWeightsError` names
      the tensors and stops training, the previous checkpoint stays the latest;
    - ``.partial`` files left by a killed job are deleted when training starts, and only by
      the run that holds the work dir's lock (:mod:`denseclip.engine.workdir`);
    - with ``save_on_signal`` (the default), SIGTERM or SIGINT during training lets the
      current iteration finish, saves its checkpoint (unless this iteration saved one anyway)
      and stops with :class:`TrainingInterrupted`; ``tools/train.py --resume`` continues
      exactly there. The ranks of a distributed run agree on the iteration (one all-reduce
      of a flag per iteration). A second signal ends the process at once.

    Arguments are those of mmengine's ``CheckpointHook``. Local output folders get
    ``backend_args=dict(backend='atomic_local')`` unless other backend arguments are given;
    remote ones (``s3://...``) are written by their own backend, as before.
    """

    def __init__(self, *args, backend_args: Optional[dict] = None,
                 file_client_args: Optional[dict] = None, save_on_signal: bool = True,
                 **kwargs):
        self.save_on_signal = save_on_signal
        self._signal: Optional[int] = None
        self._previous_handlers: dict = {}
        self._atomic = backend_args is None and file_client_args is None
        if self._atomic:
            backend_args = dict(backend=ATOMIC_BACKEND)
        super().__init__(*args, backend_args=backend_args, file_client_args=file_client_args,
                         **kwargs)
        self._last_good: Optional[str] = None  # the newest checkpoint written completely

    def before_train(self, runner) -> None:
        out_dir = self.out_dir if self.out_dir is not None else runner.work_dir
        if self._atomic and '://' in str(out_dir):
            self._atomic, self.backend_args = False, None  # a remote store: its own backend
        super().before_train(runner)
        self._last_good = runner.message_hub.get_info('last_ckpt')  # set when resumed
        if self._atomic and is_main_process():
            if holds_work_dir(runner.work_dir):
                for path in remove_partial_files(self.out_dir):
                    runner.logger.warning(f'removed {path}, a checkpoint whose writing was '
                                          'interrupted')
            else:  # without WorkDirLockHook: they may belong to a live run
                runner.logger.warning(f'unfinished checkpoint files in {self.out_dir} are left '
                                      'in place: this run does not hold the work dir lock '
                                      '(WorkDirLockHook)')
        if self.save_on_signal:
            self._install_handlers()

    # ----------------------------------------------------------------- stopping on a signal
    def _install_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # Python delivers signals to the main thread only
        self._signal = None
        for signum in STOP_SIGNALS:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}

    def _on_signal(self, signum: int, frame) -> None:
        if self._signal is not None:  # the second one: stop now, as without this hook
            self._restore_handlers()
            signal.raise_signal(signum)
            return
        self._signal = signum  # (no logging here: the handler may interrupt the logger)

    def _stop_requested(self) -> Optional[int]:
        """The signal received by any rank, or None."""
        if get_dist_info()[1] == 1:
            return self._signal
        flag = torch.tensor([self._signal or 0])
        all_reduce(flag, op='max')
        return int(flag.item()) or None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        if not self.save_on_signal:
            return
        signum = self._stop_requested()
        step = runner.iter + 1
        if signum is None or step >= runner.max_iters:  # the last iteration: just finish
            return
        path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(step))
        if self.last_ckpt != path:  # this iteration's periodic save did not write it
            self._save_checkpoint_with_step(runner, step,
                                            dict(epoch=runner.epoch, iter=step))
        self._restore_handlers()
        print_log(f'received {signal.Signals(signum).name}: stopping after iteration {step}',
                  logger='current', level=logging.WARNING)
        raise TrainingInterrupted(
            f'training stopped by {signal.Signals(signum).name} after iteration {step} of '
            f'{runner.max_iters}; saved {path}. Continue with the same command plus --resume '
            f'(tools/train.py CONFIG --work-dir {runner.work_dir} --resume).', signum)

    def after_train(self, runner) -> None:
        self._restore_handlers()
        super().after_train(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        bad = non_finite_entries(checkpoint.get('state_dict', {}))
        if bad:
            step = checkpoint.get('meta', {}).get('iter', runner.iter + 1)
            raise NonFiniteWeightsError(
                f'refusing to save a checkpoint at iteration {step}: {len(bad)} weight tensors '
                f'hold NaN or Inf ({", ".join(bad[:5])}{", ..." if len(bad) > 5 else ""}). '
                f'Training is stopped; the latest good checkpoint is {self._last_good or "none"}. '
                'Lower the learning rate or clip gradients (optim_wrapper.clip_grad), then '
                'resume with tools/train.py --resume.')

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        if not self._atomic:
            return super()._save_checkpoint_with_step(runner, step, meta)
        evicted = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                evicted.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        previous = self.last_ckpt
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        try:
            runner.save_checkpoint(
                self.out_dir, ckpt_filename, self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        except BaseException:
            self.last_ckpt = previous
            runner.message_hub.update_info('last_ckpt', previous)
            raise
        self._last_good = self.last_ckpt
        if not is_main_process():
            return
        atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt.encode())
        for old_step in evicted:  # only now that the new checkpoint is complete
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old_step))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed writes folders
                self.file_backend.rmtree(path)
