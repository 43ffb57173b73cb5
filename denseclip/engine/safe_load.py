"""Checkpoint loading that never runs code from the file: the project's safe-loading policy.

- Pickled checkpoints (state dicts, DenseCLIP / mmengine checkpoints, resume checkpoints with
  optimiser and message-hub state) are read with ``torch.load(weights_only=True)``. Besides
  tensors and plain Python containers, only the types that mmengine writes into its checkpoints
  are allowed (:data:`SAFE_GLOBALS`): numpy arrays, scalars and dtypes, mmengine's
  ``HistoryBuffer``, and a ``getattr`` that can only fetch ``HistoryBuffer``'s own statistics
  methods (mmengine pickles them as ``getattr(HistoryBuffer, 'mean')``; the real ``getattr``
  would reach any attribute of any allowed object).
- TorchScript archives (OpenAI's ``RN50.pt``, ...) are read with ``torch.jit.load``.
- Anything else is refused with a :class:`~denseclip.clip.CheckpointError` that names the file
  and the globals it would have imported.

mmengine's own loader tries ``weights_only=True`` and silently falls back to
``weights_only=False``; :func:`install` closes that door for every path mmengine loads from
(``load_from``, ``resume``, ``init_cfg=dict(type='Pretrained')``, ``denseclip.apis.init_model``).
"""
import os
import os.path as osp
import pickle
import re
from typing import Any, Optional

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from denseclip.clip.checkpoint import WEIGHTS_ONLY_REFUSALS, CheckpointError, is_torchscript

_np_core = getattr(np, '_core', None) or np.core  # numpy 2 renamed numpy.core


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` restricted to the public methods defined on ``HistoryBuffer``."""
    method = vars(HistoryBuffer).get(name) if obj is HistoryBuffer else None
    if name.startswith('_') or not callable(method):
        raise pickle.UnpicklingError(
            f'getattr({obj!r}, {name!r}) is not allowed: only the statistics methods of '
            "mmengine's HistoryBuffer may be fetched while loading a checkpoint")
    return method


#: What ``torch.load(weights_only=True)`` may build beyond tensors and Python containers.
SAFE_GLOBALS = [
    _np_core.multiarray._reconstruct, _np_core.multiarray.scalar, np.ndarray, np.dtype,
    *{type(np.dtype(kind)) for kind in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
        np.uint64, np.float16, np.float32, np.float64, np.str_)},
    HistoryBuffer,
    (_history_buffer_getattr, 'builtins.getattr'),
]

#: Told to users whose file is refused.
CONVERT_HINT = (
    'If you trust the file, convert it once to a plain state dict: python -c "import torch; '
    "c = torch.load('IN', weights_only=False); torch.save({'state_dict': c.get('state_dict', "
    "c)}, 'OUT')\"")


def _unsafe_globals(path: str) -> list[str]:
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001  (legacy formats, damaged files: fall back to torch's text)
        return []


def _unpickler_reason(err: Exception) -> str:
    """The cause in torch's long "Weights only load failed ..." message."""
    match = re.search(r'WeightsUnpickler error:\s*(.+)', str(err))
    return match.group(1).strip() if match else str(err).splitlines()[0]


def _damaged(name: Any, reason: str) -> CheckpointError:
    return CheckpointError(
        f'cannot read checkpoint {name!r}: the file is truncated, corrupt or not a PyTorch '
        f'checkpoint ({reason}). If a job was killed while writing it, delete it; '
        'tools/train.py --resume continues from the newest intact checkpoint.')


def weights_only_load(file: Any, map_location: Any = None, mmap: bool = False) -> Any:
    """``torch.load(file, weights_only=True)`` with :data:`SAFE_GLOBALS` allowed; no fallback.

    Args:
        file: A path or a binary file object.
        map_location: As for ``torch.load``.
        mmap: Map the tensors' storage instead of reading it (zip-format files only).

    Raises:
        CheckpointError: the file is truncated or not a checkpoint, or it holds objects whose
            unpickling could run code.
    """
    name = file if isinstance(file, (str, os.PathLike)) else getattr(file, 'name', '<stream>')
    # added (again) on every call: a ``safe_globals`` context elsewhere removes what it lists
    torch.serialization.add_safe_globals(SAFE_GLOBALS)
    try:
        return torch.load(file, map_location=map_location, weights_only=True,
                          **(dict(mmap=True) if mmap else {}))
    except pickle.UnpicklingError as err:
        found = _unsafe_globals(name) if isinstance(name, (str, os.PathLike)) else []
        if not found and not any(phrase in str(err) for phrase in WEIGHTS_ONLY_REFUSALS):
            raise _damaged(name, _unpickler_reason(err)) from err  # worded as a refusal
        what = (f'it would import {", ".join(found)}' if found else
                'it holds objects other than tensors and plain containers')
        raise CheckpointError(
            f'refusing to load checkpoint {name!r}: {what}, and unpickling such objects can run '
            'arbitrary code. DenseCLIP loads checkpoints with torch.load(weights_only=True) '
            f'only (see docs/robustness.md). {CONVERT_HINT}') from err
    except Exception as err:  # torch raises many types for damaged files
        raise _damaged(name, f'{type(err).__name__}: {err}') from err


def load_from_local_weights_only(filename: str, map_location: Optional[Any] = None) -> Any:
    """mmengine ``CheckpointLoader`` backend for local paths (the ``''`` scheme).

    Returns what the file holds; for a TorchScript archive, its state dict.
    """
    path = osp.expanduser(os.fspath(filename))
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'checkpoint file {path!r} does not exist. Check the path given as load_from, '
            '--resume, the CHECKPOINT argument of tools/test.py or init_cfg.checkpoint.')
    if not os.access(path, os.R_OK):
        raise CheckpointError(f'checkpoint file {path!r} is not readable (permission denied)')
    if is_torchscript(path):
        try:
            return torch.jit.load(path, map_location=map_location or 'cpu').state_dict()
        except Exception as err:  # noqa: BLE001
            raise CheckpointError(f'cannot read TorchScript archive {path!r}: it is truncated or '
                                  f'corrupt ({type(err).__name__}: {err})') from err
    return weights_only_load(path, map_location)


def _strict_torch_load(file: Any, map_location: Any = None, weights_only: Any = None) -> Any:
    """Stands in for mmengine's ``_safe_torch_load``: same signature, never unsafe."""
    return weights_only_load(file, map_location)


def install() -> None:
    """Makes every mmengine checkpoint load go through :func:`weights_only_load`.

    Registers :func:`load_from_local_weights_only` for local paths (mmengine's public
    ``CheckpointLoader.register_scheme``) and replaces the private ``_safe_torch_load`` that the
    remote schemes (``pavi://``, ``s3://``, ``open-mmlab://``, ...) call. Idempotent.
    """
    torch.serialization.add_safe_globals(SAFE_GLOBALS)
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_weights_only,
                                     force=True)
    if hasattr(mmengine_checkpoint, '_safe_torch_load'):
        mmengine_checkpoint._safe_torch_load = _strict_torch_load
