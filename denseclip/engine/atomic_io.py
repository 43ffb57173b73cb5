"""Atomic file writes: a file appears complete under its name, or not at all.

The bytes go to a hidden temporary file in the same folder (``.NAME.PID.RANDOM.partial``), are
flushed to disk with ``fsync``, and the file is renamed to ``NAME`` with ``os.replace`` (atomic
on POSIX file systems and on NTFS). A job killed while writing leaves at most a ``.partial`` file,
which :func:`remove_partial_files` deletes on the next start; the previous file of that name
and every other checkpoint stay intact.
"""
import glob
import os
import os.path as osp
import uuid
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend

PARTIAL_SUFFIX = '.partial'
#: ``backend_args=dict(backend=ATOMIC_BACKEND)`` makes mmengine's file I/O write atomically.
ATOMIC_BACKEND = 'atomic_local'


def _fsync_dir(dirname: str) -> None:
    """Persists a rename (the directory entry); not possible (nor needed) on Windows."""
    if os.name != 'posix':
        return
    fd = os.open(dirname, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteError(OSError):
    """A file could not be written (disk full, permission denied, ...); the message names it
    and says that what was there before is unchanged."""


def atomic_write(path: Union[str, Path], data: bytes) -> None:
    """Writes ``data`` to ``path`` so that readers never see a partial file.

    Raises:
        WriteError: the folder cannot be created or the file written (its ``errno`` is the
            operating system's); ``path`` keeps its previous contents, if it had any.
    """
    path = os.fspath(path)
    dirname = osp.dirname(osp.abspath(path))
    tmp = osp.join(dirname, f'.{osp.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}'
                   f'{PARTIAL_SUFFIX}')
    try:
        os.makedirs(dirname, exist_ok=True)
        with open(tmp, 'xb') as f:  # honours the umask, unlike tempfile.mkstemp (0600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        kept = ('its previous contents are unchanged' if osp.exists(path) else
                'nothing was written')
        raise WriteError(err.errno, f'cannot write {path} ({err.strerror or err}); {kept}. '
                         'Free space or fix the permissions, then run again') from err
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    _fsync_dir(dirname)


def remove_partial_files(dirname: Union[str, Path]) -> list[str]:
    """Deletes the ``.partial`` files a killed job left in ``dirname``; returns their paths."""
    removed = sorted(glob.glob(osp.join(glob.escape(os.fspath(dirname)),
                                        f'.*{PARTIAL_SUFFIX}')))
    for path in removed:
        os.remove(path)
    return removed


@register_backend(ATOMIC_BACKEND)
class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` whose ``put`` and ``put_text`` write atomically."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write(filepath, obj)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        atomic_write(filepath, obj.encode(encoding))
