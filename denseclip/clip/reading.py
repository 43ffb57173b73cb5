"""Reading weight files safely: the one reader of every checkpoint, and of CLIP's weights.

Supported inputs: OpenAI's TorchScript archives (``RN50.pt``, ``ViT-B-16.pt``; read with
``torch.jit.load``), ``.safetensors`` files, plain state dicts and mmengine checkpoints
(``{'state_dict': ...}``, also with the runner's state: :data:`RUN_CHECKPOINT_GLOBALS`), read
with ``torch.load(weights_only=True)`` so that a file cannot run code when loaded; a file that
cannot be read is named with what it is instead and what to do (:func:`unreadable`). CLIP
weights are read by :func:`read_clip_weights`, which also takes a checkpoint of the contrastive
CLIP model (keys under ``clip.``). Loading what is read into models is
:mod:`denseclip.clip.checkpoint`'s part. Nothing here touches the network.
"""
import os
import pickle
import re
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

import numpy as np
import safetensors.torch
import torch
from mmengine.logging import MMLogger
from mmengine.logging.history_buffer import HistoryBuffer

from .errors import CheckpointError

#: int64 scalars that OpenAI's archives store next to the weights.
ARCHIVE_METADATA = ('input_resolution', 'context_length', 'vocab_size')

#: Where users are told to get the weights from when a file is missing.
WEIGHTS_HINT = ('Download the OpenAI CLIP archives (RN50.pt, RN101.pt, ViT-B-16.pt) as described '
                'in pretrained/README.md and place them in pretrained/.')

#: What to do about a damaged weights file.
REREAD_HINT = ('Download or copy it again; for CLIP weights see pretrained/README.md.')

StateDict = dict[str, torch.Tensor]

_np_core = getattr(np, '_core', None) or np.core  # numpy 2 renamed numpy.core
#: numpy values that checkpoints' metadata holds (arrays, scalars, dtypes), which
#: ``torch.load(weights_only=True)`` may build when a caller allows them.
NUMPY_GLOBALS = [
    _np_core.multiarray._reconstruct, _np_core.multiarray.scalar, np.ndarray, np.dtype,
    *{type(np.dtype(kind)) for kind in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
        np.uint64, np.float16, np.float32, np.float64, np.str_)},
]


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` restricted to the public methods defined on ``HistoryBuffer``."""
    method = vars(HistoryBuffer).get(name) if obj is HistoryBuffer else None
    if name.startswith('_') or not callable(method):
        raise pickle.UnpicklingError(
            f'getattr({obj!r}, {name!r}) is not allowed: only the statistics methods of '
            "mmengine's HistoryBuffer may be fetched while loading a checkpoint")
    return method


#: What mmengine's runner writes into a checkpoint beyond tensors and Python containers, which
#: ``torch.load(weights_only=True)`` may build when reading one: numpy values (meta, message
#: hub), the message hub's ``HistoryBuffer`` and a ``getattr`` that fetches only
#: ``HistoryBuffer``'s own statistics methods (pickled as ``getattr(HistoryBuffer, 'mean')``;
#: the real ``getattr`` would reach any attribute of any allowed object).
RUN_CHECKPOINT_GLOBALS = [
    *NUMPY_GLOBALS,
    HistoryBuffer,
    (_history_buffer_getattr, 'builtins.getattr'),
]

#: Prefix of the CLIP weights in checkpoints of the contrastive CLIP model (tools/train.py).
TRAINED_CLIP_PREFIX = 'clip.'

#: The first component of every key of OpenAI's CLIP state dicts (weights and metadata).
CLIP_KEY_ROOTS = ('visual', 'transformer', 'token_embedding', 'positional_embedding',
                  'ln_final', 'text_projection', 'logit_scale', *ARCHIVE_METADATA)


#: torch's words when its weights-only unpickler refuses an object (matched case-insensitively);
#: it words damaged files ("Unsupported operand 60") as "Weights only load failed" too.
WEIGHTS_ONLY_REFUSALS = ('unsupported global', 'unrecognized function', 'can only build',
                         'can only create new object', 'is not allowed', 'must be imported to load')

#: Told to users whose file is refused because unpickling it could run code.
CONVERT_HINT = (
    'If you trust the file, convert it once to a plain state dict: python -c "import torch; '
    "c = torch.load('IN', weights_only=False); torch.save({'state_dict': c.get('state_dict', "
    "c)}, 'OUT')\"")


def is_torchscript(path: str) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip holding ``constants.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith('constants.pkl') for name in archive.namelist())


def _pickled_globals(path: str, err: Exception) -> list[str]:
    """The Python objects (``module.name``) a pickle that torch refused would import."""
    if os.path.isfile(path) and zipfile.is_zipfile(path):
        try:
            return torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001  (a damaged archive: fall back to torch's text)
            pass
    return re.findall(r'GLOBAL (\S+?)(?:\s|$)', str(err))  # torch names the first it met


def _torch_detail(err: Exception) -> str:
    """What torch found wrong, without its advice (which is to load with weights_only=False)."""
    match = re.search(r'WeightsUnpickler error:\s*(.+?)\s*(?:Check the documentation|$)',
                      str(err), re.DOTALL)
    lines = str(err).strip().splitlines()
    detail = match.group(1) if match else lines[0] if lines else ''
    return f'{type(err).__name__}: {detail}' if detail else type(err).__name__


def _what_the_file_is(path: str) -> tuple[str, str] | None:
    """What a file that torch cannot read is instead, and what to do, if its first bytes tell."""
    if not os.path.isfile(path):  # a stream
        return None
    with open(path, 'rb') as f:
        head = f.read(256)
    if not head:
        return 'the file is empty (0 bytes)', ''
    if head[:1] == pickle.PROTO and head[1:2] >= b'\x03':  # torch.save: protocol 2 or a zip
        return (f'it is a plain Python pickle (protocol {head[1]}), not a file torch.save wrote',
                'If you trust it, unpickle it yourself and torch.save its tensors.')
    text = head.decode('utf-8', errors='ignore')
    if b'\0' not in head and len(text) >= len(head) - 3 and all(
            char.isprintable() or char in '\t\r\n' for char in text):
        first_line = text.strip().splitlines()[0] if text.strip() else ''
        return (f'it is a text file, not a checkpoint (it begins {first_line[:60]!r})',
                'Check the path; text in place of weights is usually a failed download (an '
                'HTML page) or a Git LFS pointer (run git lfs pull).')
    return None


def unreadable(path: str, err: Exception, hint: str) -> CheckpointError:
    """The error to raise when torch cannot read ``path``, in the project's words.

    Args:
        path: The file.
        err: What ``torch.load`` (``weights_only=True``) raised.
        hint: What to do about a damaged file (download it again, ...).

    Returns:
        A :class:`CheckpointError` that says what the file is instead (empty, text, a plain
        pickle), or that it would run code when loaded (and how to convert a trusted one), or
        that it is damaged. torch's advice to load with ``weights_only=False`` is left out.
    """
    found_instead = _what_the_file_is(path)
    if found_instead is not None:
        what, remedy = found_instead
        return CheckpointError(f'cannot read checkpoint {path!r}: {what}. {remedy or hint}')
    found = _pickled_globals(path, err) if isinstance(err, pickle.UnpicklingError) else []
    if found or isinstance(err, pickle.UnpicklingError) and any(
            phrase in str(err).lower() for phrase in WEIGHTS_ONLY_REFUSALS):
        objects = (f'it would import {", ".join(found)}' if found else
                   'it holds objects other than tensors and plain containers')
        return CheckpointError(
            f'refusing to load checkpoint {path!r}: {objects}, and unpickling such objects can '
            'run arbitrary code. DenseCLIP loads checkpoints with torch.load(weights_only=True) '
            f'only (see docs/robustness.md). {CONVERT_HINT}')
    return CheckpointError(f'cannot read checkpoint {path!r}: the file is truncated, corrupt or '
                           f'not a PyTorch checkpoint ({_torch_detail(err)}). {hint}')


def non_finite_tensors(content: Any, prefix: str = '') -> list[tuple[str, int, int]]:
    """``(name, non-finite values, values)`` of every floating tensor in ``content`` (nested
    mappings and sequences, as a checkpoint holds them) that holds NaN or Inf."""
    if isinstance(content, torch.Tensor):
        if not content.is_floating_point() and not content.is_complex():
            return []
        bad = int((~torch.isfinite(content)).sum())
        return [(prefix or 'tensor', bad, content.numel())] if bad else []
    if isinstance(content, Mapping):
        items = content.items()
    elif isinstance(content, (list, tuple)):
        items = enumerate(content)
    else:
        return []
    return [entry for key, value in items
            for entry in non_finite_tensors(value, f'{prefix}.{key}' if prefix else str(key))]


def check_finite(content: Any, name: str, max_listed: int = 5) -> None:
    """Raises :class:`CheckpointError` naming ``name`` and the first tensors holding NaN or Inf.

    Weights that hold NaN or Inf give NaN logits: a test would print an mIoU over arbitrary
    predictions, and training would stop at its first step blaming the learning rate.
    """
    bad = non_finite_tensors(content)
    if not bad:
        return
    listed = ', '.join(f'{key} ({count} of {total} values)'
                       for key, count, total in bad[:max_listed])
    more = f' and {len(bad) - max_listed} more' if len(bad) > max_listed else ''
    raise CheckpointError(
        f'checkpoint {name!r} holds NaN or Inf in {len(bad)} tensors: {listed}{more}. Its '
        'weights cannot give a result; it was probably written by a run that diverged. Use an '
        'earlier checkpoint of that run (tools/train.py only writes finite ones).')


def read_checkpoint(file: str | os.PathLike | BinaryIO, map_location: Any = 'cpu',
                    allowed_globals: Sequence[Any] = (), missing_hint: str = WEIGHTS_HINT,
                    damaged_hint: str = REREAD_HINT, mmap: bool = False,
                    finite: bool = True) -> Any:
    """The one reader of weight files: what ``file`` holds, read without running its code.

    TorchScript archives (OpenAI's) give their state dict (``torch.jit.load``), ``.safetensors``
    files theirs; anything else is read with ``torch.load(weights_only=True)``, which builds
    tensors and plain containers only, plus ``allowed_globals`` for this call (no fallback to
    an unsafe load, and torch's process-wide allowlist is left as it was).

    Args:
        file: A path, or a binary stream (read with ``torch.load`` only).
        map_location: As for ``torch.load``.
        allowed_globals: Further types ``torch.load`` may build (``safe_globals`` entries).
        missing_hint: What to do when the path does not exist.
        damaged_hint: What to do when the file is damaged.
        mmap: Map the tensors' storage instead of reading it (zip-format files only).
        finite: Refuse a file whose floating tensors hold NaN or Inf (:func:`check_finite`);
            off only for a caller that reads metadata and loads the weights later.

    Raises:
        FileNotFoundError: the path does not exist.
        CheckpointError: the file is not readable, truncated, not a checkpoint, would run
            code when loaded, or holds NaN / Inf; the message says what it is and what to do.
    """
    path = None
    if isinstance(file, (str, os.PathLike)):
        path = os.path.expanduser(os.fspath(file))
        if os.path.isdir(path):
            raise CheckpointError(f'checkpoint {path!r} is a folder; give the checkpoint file in '
                                  'it (e.g. iter_80000.pth)')
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f'checkpoint file {path!r} does not exist. {missing_hint}'.rstrip())
        if not os.access(path, os.R_OK):
            raise CheckpointError(f'checkpoint file {path!r} is not readable (permission denied)')
    name = path or str(getattr(file, 'name', '<stream>'))
    try:
        if path is not None and is_torchscript(path):
            content = torch.jit.load(path, map_location=map_location or 'cpu').state_dict()
        elif path is not None and path.endswith('.safetensors'):
            content = safetensors.torch.load_file(path, device=str(map_location or 'cpu'))
        else:
            with torch.serialization.safe_globals(list(allowed_globals)):
                content = torch.load(path or file, map_location=map_location,
                                     weights_only=True, **(dict(mmap=True) if mmap else {}))
    except Exception as err:  # torch raises many types for damaged files
        raise unreadable(name, err, damaged_hint) from None  # torch advises the unsafe load
    if finite:
        check_finite(content, name)
    return content


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """Reads a CLIP archive, a state dict or an mmengine checkpoint as an fp32 state dict.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message says where to get CLIP weights).
        CheckpointError: the file is truncated, not a checkpoint, or would run code on loading.
    """
    state_dict = read_checkpoint(path)
    if isinstance(state_dict, Mapping) and 'state_dict' in state_dict:
        state_dict = state_dict['state_dict']
    if not isinstance(state_dict, Mapping) or not all(
            isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise CheckpointError(f'{os.fspath(path)!r} does not hold a state dict (a mapping of '
                              'names to tensors)')
    return {key: value.float() if value.is_floating_point() else value
            for key, value in state_dict.items()}


def select_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """The entries under ``prefix`` (e.g. ``'visual.'``) with the prefix stripped."""
    return {key[len(prefix):]: value for key, value in state_dict.items()
            if key.startswith(prefix)}


def _is_clip_key(key: str) -> bool:
    return key.split('.', 1)[0] in CLIP_KEY_ROOTS


def clip_state_dict(checkpoint: Any, source: str) -> StateDict:
    """The CLIP weights, with OpenAI's key names and as fp32, in what a checkpoint file holds.

    Args:
        checkpoint: What :func:`read_checkpoint` returned: OpenAI's archive or a CLIP state
            dict, or an mmengine checkpoint whose ``state_dict`` holds CLIP's keys, bare or
            all under ``clip.`` (the contrastive CLIP model of ``tools/train.py``; its other
            tensors, which are not CLIP weights, are left out).
        source: The file, for messages.

    Raises:
        CheckpointError: ``checkpoint`` is not a state dict, or no key of it is one of CLIP's.
    """
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, Mapping) \
        else checkpoint
    if not isinstance(state_dict, Mapping) or not all(
            isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise CheckpointError(f'{source!r} does not hold a state dict (a mapping of names to '
                              'tensors)')
    inner = select_prefix(state_dict, TRAINED_CLIP_PREFIX)
    if not any(map(_is_clip_key, state_dict)) and any(map(_is_clip_key, inner)):
        others = len(state_dict) - len(inner)
        if others:
            MMLogger.get_current_instance().info(
                f'{source}: {others} tensors outside {TRAINED_CLIP_PREFIX!r} are not CLIP '
                'weights; not used')
        state_dict = inner
    if not any(map(_is_clip_key, state_dict)):
        raise CheckpointError(
            f'{source!r} holds no CLIP model: no key of OpenAI\'s CLIP (visual.*, '
            f'transformer.*, text_projection, ...), bare or under {TRAINED_CLIP_PREFIX!r} (keys '
            f'begin {sorted(state_dict)[:3]}). Expected an OpenAI CLIP archive, a CLIP state '
            'dict, or a checkpoint of the contrastive CLIP model')
    return {key: value.float() if value.is_floating_point() else value
            for key, value in state_dict.items()}


def read_clip_weights(path: str | os.PathLike) -> StateDict:
    """The one reader of CLIP weights: a file's CLIP state dict, OpenAI's key names, fp32.

    Takes OpenAI's archives, ``.safetensors`` files, CLIP state dicts and mmengine checkpoints
    of them, including a checkpoint of the contrastive CLIP model as ``tools/train.py`` writes
    it (weights under ``clip.``, with the runner's meta, message hub and optimiser state, read
    with :data:`RUN_CHECKPOINT_GLOBALS`).

    Raises:
        FileNotFoundError: ``path`` does not exist (the message says where to get CLIP weights).
        CheckpointError: the file is damaged, would run code on loading, or holds no CLIP
            weights (see :func:`clip_state_dict`).
    """
    checkpoint = read_checkpoint(path, allowed_globals=RUN_CHECKPOINT_GLOBALS)
    return clip_state_dict(checkpoint, os.fspath(path))
