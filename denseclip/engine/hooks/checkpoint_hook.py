"""mmengine's CheckpointHook, made safe against jobs killed at any moment."""
import os.path as osp
from typing import Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmseg.registry import HOOKS

from ..atomic_io import ATOMIC_BACKEND, atomic_write, remove_partial_files


class NonFiniteWeightsError(FloatingPointError):
    """The model holds NaN or Inf weights; they are never written to a checkpoint."""


def non_finite_entries(state_dict: dict) -> list[str]:
    """Names of the floating-point tensors of ``state_dict`` holding NaN or Inf."""
    return [name for name, value in state_dict.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point()
            and not bool(torch.isfinite(value).all())]


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
    - ``.partial`` files left by a killed job are deleted when training starts.

    Arguments are those of mmengine's ``CheckpointHook``. Local output folders get
    ``backend_args=dict(backend='atomic_local')`` unless other backend arguments are given;
    remote ones (``s3://...``) are written by their own backend, as before.
    """

    def __init__(self, *args, backend_args: Optional[dict] = None,
                 file_client_args: Optional[dict] = None, **kwargs):
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
            for path in remove_partial_files(self.out_dir):
                runner.logger.warning(f'removed {path}, a checkpoint whose writing was '
                                      'interrupted')

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
