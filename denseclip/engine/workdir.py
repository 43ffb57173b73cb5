"""One training run per work dir: an exclusive, advisory lock held for the whole run.

Two ``tools/train.py`` runs in one work dir (a SLURM requeue while the first job still runs, a
command typed twice) would delete each other's unfinished checkpoints and overwrite each
other's ``iter_N.pth``. :class:`WorkDirLockHook` takes ``WORK_DIR/.denseclip.lock`` with
``fcntl.flock`` when training starts and keeps it until the process ends; a second run stops
with :class:`WorkDirBusyError`, naming the holder's PID, host and start time. The operating
system drops the lock when its process dies, however it dies, so a killed run never leaves a
stale lock behind. The lock file's contents only describe the holder.
"""
import datetime
import json
import os
import os.path as osp
import socket
import sys
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.runner import BaseLoop
from mmseg.registry import HOOKS

try:
    import fcntl
except ImportError:  # Windows: no advisory locks through fcntl
    fcntl = None

LOCK_NAME = '.denseclip.lock'

#: Locks this process holds: absolute work dir -> open file descriptor.
_held: dict[str, int] = {}


class WorkDirBusyError(RuntimeError):
    """Another live run holds the work dir."""


def _key(work_dir: str) -> str:
    return osp.realpath(osp.abspath(work_dir))


def holds_work_dir(work_dir: str) -> bool:
    """Whether this process holds the lock of ``work_dir``."""
    return _key(work_dir) in _held


def _holder(fd: int) -> str:
    """Who holds the lock, from what the holder wrote into the file."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or '{}')
    except (OSError, ValueError):
        info = {}
    if not info:
        return 'another process (it wrote nothing about itself)'
    return (f"PID {info.get('pid')} on host {info.get('host')}, started "
            f"{info.get('started')}: {info.get('command')}")


def lock_work_dir(work_dir: str) -> None:
    """Takes the exclusive lock of ``work_dir`` for this process (again: nothing happens).

    Raises:
        WorkDirBusyError: another live process holds it.
    """
    key = _key(work_dir)
    if key in _held or fcntl is None:
        return
    os.makedirs(key, exist_ok=True)
    path = osp.join(key, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _holder(fd)
        os.close(fd)
        raise WorkDirBusyError(
            f'work dir {work_dir!r} is in use by another training run ({holder}); two runs '
            'in one work dir would overwrite and delete each other\'s checkpoints. Wait for '
            'it to end (or stop it), or give this run another --work-dir.') from None
    info = dict(pid=os.getpid(), host=socket.gethostname(),
                started=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
                command=' '.join(sys.argv))
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    os.fsync(fd)
    _held[key] = fd


def unlock_work_dir(work_dir: str) -> None:
    """Releases the lock of ``work_dir`` if this process holds it."""
    fd = _held.pop(_key(work_dir), None)
    if fd is not None:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@HOOKS.register_module()
class WorkDirLockHook(Hook):
    """Holds the work dir's lock (:func:`lock_work_dir`) from the start of training to its end.

    Taken in ``before_run`` of a training run (before any checkpoint is read, written or
    cleaned up), by the main process only; tests and validations alone do not lock. Added to
    every config by :func:`denseclip.engine.config.prepare_config`.
    """

    priority = 'HIGHEST'

    def __init__(self) -> None:
        self._locked: Optional[str] = None

    def before_run(self, runner) -> None:
        training = isinstance(getattr(runner, '_train_loop', None), BaseLoop)
        if training and is_main_process():
            lock_work_dir(runner.work_dir)
            self._locked = runner.work_dir

    def after_run(self, runner) -> None:
        if self._locked is not None:
            unlock_work_dir(self._locked)
            self._locked = None
