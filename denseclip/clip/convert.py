"""Offline checkpoint conversion (``tools/convert_checkpoint.py``): pure functions over state dicts.

Two conversions, each a pure function over what a file holds:

* :func:`convert_clip`: an OpenAI CLIP archive (TorchScript) -> a plain state dict, written as
  ``.safetensors`` or ``.pth`` (loadable with ``torch.load(weights_only=True)``), so that
  TorchScript need not be loaded again. Keys and values are kept exactly.
* :func:`convert_denseclip`: a released DenseCLIP checkpoint (mmseg 0.x era:
  ``{'meta', 'state_dict', 'optimizer'}``) -> this project's format: ``{'meta': {'dataset_meta':
  {...}, ...}, 'state_dict': {...}}`` with tensors and plain Python values only. Parameter names
  follow the released code (``denseclip/clip/checkpoint.py`` and DESIGN §5), so :data:`RENAMES`
  is empty and the conversion verifies rather than renames; wrappers (``module.``) are
  stripped and the optimizer state is dropped, all of it reported.
"""
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import build_model, infer_clip_config
from .errors import CheckpointError
from .fit import check_fit
from .reading import RUN_CHECKPOINT_GLOBALS, read_checkpoint, read_state_dict

StateDict = dict[str, torch.Tensor]

#: ``(old prefix, new prefix)`` pairs applied to released DenseCLIP keys. Empty: the released
#: names are this project's names (checked key by key in tests/test_models).
RENAMES: tuple[tuple[str, str], ...] = ()
#: Prefixes that training wrappers (DataParallel, DistributedDataParallel) put before keys.
WRAPPER_PREFIXES = ('module.',)
#: Plain values a converted checkpoint's meta may hold (``torch.load(weights_only=True)``).
PLAIN_TYPES = (str, int, float, bool, type(None))
#: What to do when a converted checkpoint does not fit the model of ``--config``.
CONFIG_HINT = ('Pass as --config the config of the model the checkpoint was trained with (the '
               'class names, backbone and crop size must be the same).')


@dataclass
class Report:
    """What a conversion changed: every renamed key and every dropped entry."""
    renamed: list[tuple[str, str]] = field(default_factory=list)  # weight keys
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    num_tensors: int = 0

    def lines(self) -> list[str]:
        lines = [f'{self.num_tensors} tensors converted']
        if self.renamed:
            lines.append(f'renamed {len(self.renamed)} keys:')
            lines += [f'  {old} -> {new}' for old, new in self.renamed]
        else:
            lines.append('no renaming needed: every weight already has its name in this project')
        if self.dropped:
            lines.append(f'dropped {len(self.dropped)} entries:')
            lines += [f'  {name}' for name in self.dropped]
        else:
            lines.append('nothing dropped')
        return lines + self.notes


# ------------------------------------------------------------------------------ files
def read_released(path: str | os.PathLike, trust: bool = False) -> Any:
    """Reads a released checkpoint, or one of this project's runs, with the project's reader
    (``weights_only=True``, with what mmengine's runner writes allowed).

    Args:
        path: The checkpoint.
        trust: If the file holds Python objects beyond tensors and plain values, load it
            anyway (``weights_only=False``, which can run code from the file: only for files
            from a source you trust). The one unsafe load of the project, asked for explicitly
            with ``tools/convert_checkpoint.py --trust-pickle``.

    Raises:
        CheckpointError: the file is unreadable, or needs ``trust`` and it was not given.
    """
    try:
        # RUN_CHECKPOINT_GLOBALS: this project's own iter_N.pth (message hub, numpy meta) too
        return read_checkpoint(path, allowed_globals=RUN_CHECKPOINT_GLOBALS, missing_hint='')
    except CheckpointError as err:
        if not str(err).startswith('refusing'):  # damaged, not merely unsafe
            raise
        if not trust:
            raise CheckpointError(
                f'{err} If you trust its source, rerun with --trust-pickle; the converted file '
                'will hold tensors and plain values only.') from err
    return torch.load(path, map_location='cpu', weights_only=False)  # explicit --trust-pickle


def save_state_dict(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike,
                    metadata: Mapping[str, str] | None = None) -> None:
    """Writes a flat state dict: ``.safetensors`` by extension, else ``torch.save``."""
    path = os.fspath(path)
    tensors = {key: value.contiguous() for key, value in state_dict.items()}
    if path.endswith('.safetensors'):
        from safetensors.torch import save_file
        save_file(tensors, path, metadata=dict(metadata or {}))
    else:
        torch.save(tensors, path)


# ------------------------------------------------------------------------------ CLIP
def convert_clip(state_dict: Mapping[str, torch.Tensor]) -> tuple[StateDict, Report]:
    """An OpenAI CLIP state dict (e.g. a TorchScript archive's) as a plain one, unchanged.

    Raises:
        CheckpointError: it is not a CLIP state dict.
    """
    infer_clip_config(state_dict)  # raises unless the weights are CLIP's
    converted = {key: value.detach().clone() for key, value in state_dict.items()}
    return converted, Report(num_tensors=len(converted))


def assert_same_tensors(ours: Mapping[str, torch.Tensor],
                        expected: Mapping[str, torch.Tensor]) -> None:
    """Raises ``CheckpointError`` unless both hold the same keys, dtypes and values."""
    if set(ours) != set(expected):
        raise CheckpointError(f'keys differ: missing {sorted(set(expected) - set(ours))[:5]}, '
                              f'unexpected {sorted(set(ours) - set(expected))[:5]}')
    different = [key for key in expected if ours[key].dtype != expected[key].dtype
                 or not torch.equal(ours[key], expected[key])]
    if different:
        raise CheckpointError(f'{len(different)} tensors differ after conversion, e.g. '
                              f'{different[:5]}')


# ------------------------------------------------------------------------------ DenseCLIP
def _plain(value: Any) -> tuple[bool, Any]:
    """``(True, value as plain Python)`` for JSON-like values, ``(False, None)`` otherwise."""
    if isinstance(value, (np.ndarray, np.generic)):
        value = value.tolist()
    if isinstance(value, PLAIN_TYPES):
        return True, value
    if isinstance(value, (list, tuple)):
        items = [_plain(item) for item in value]
        if all(ok for ok, _ in items):
            return True, type(value)(item for _, item in items)
    if isinstance(value, Mapping) and all(isinstance(key, (str, int)) for key in value):
        items = {key: _plain(item) for key, item in value.items()}
        if all(ok for ok, _ in items.values()):
            return True, {key: item for key, (_, item) in items.items()}
    return False, None


def _convert_meta(meta: Mapping, report: Report) -> dict:
    """mmseg 0.x ``meta`` -> 1.x: ``CLASSES``/``PALETTE`` become ``dataset_meta``."""
    converted = {}
    for key, value in meta.items():
        ok, value = _plain(value)
        if ok:
            converted[key] = value
        else:
            report.dropped.append(f'meta.{key} (not a plain value)')
    if 'dataset_meta' not in converted and 'CLASSES' in converted:
        dataset_meta = dict(classes=tuple(converted.pop('CLASSES')))
        if converted.get('PALETTE') is not None:
            dataset_meta['palette'] = [list(colour) for colour in converted.pop('PALETTE')]
        converted['dataset_meta'] = dataset_meta
        report.notes.append('meta: CLASSES/PALETTE -> dataset_meta (mmseg 1.x)')
    return converted


def convert_denseclip(checkpoint: Mapping) -> tuple[dict, Report]:
    """A released DenseCLIP checkpoint (or a bare state dict) in this project's format.

    Returns:
        ``({'meta': ..., 'state_dict': ...}, report)``; the report lists renamed keys and
        dropped entries (optimizer state, wrapper prefixes, non-plain meta values).
    """
    report = Report()
    if 'state_dict' in checkpoint:
        state_dict, meta = checkpoint['state_dict'], checkpoint.get('meta') or {}
        report.dropped += [f'{key} (training state)' for key in checkpoint
                           if key not in ('state_dict', 'meta')]
    else:
        state_dict, meta = checkpoint, {}
    not_tensors = [key for key, value in state_dict.items()
                   if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f'the state dict holds non-tensors at {not_tensors[:5]}')
    converted = {}
    for key, value in state_dict.items():
        new = key
        for prefix in WRAPPER_PREFIXES:
            if new.startswith(prefix):
                new = new[len(prefix):]
        for old_prefix, new_prefix in RENAMES:
            if new.startswith(old_prefix):
                new = new_prefix + new[len(old_prefix):]
        if new != key:
            report.renamed.append((key, new))
        if new in converted:
            raise CheckpointError(f'two keys become {new!r} after renaming')
        converted[new] = value.detach().clone()
    report.num_tensors = len(converted)
    return dict(meta=_convert_meta(meta, report), state_dict=converted), report


def class_name_notes(meta: Mapping, class_names) -> list[str]:
    """A warning if the checkpoint's classes are not the config's (the text branch embeds the
    config's names, so predictions would be meaningless)."""
    classes = (meta.get('dataset_meta') or {}).get('classes')
    if class_names is None:
        return ['the model has no class names (not DenseCLIP): classes not compared']
    if classes is None:
        return ['the checkpoint names no classes; the config\'s class names are used']
    if [name.strip() for name in classes] != [name.strip() for name in class_names]:
        return [f'WARNING: the checkpoint was trained on {len(classes)} classes '
                f'({", ".join(list(classes)[:3])}, ...) that differ from the config\'s '
                f'{len(class_names)} ({", ".join(list(class_names)[:3])}, ...)']
    return [f'class names agree with the config ({len(classes)} classes)']


# ------------------------------------------------------------------------------ files in, out
def convert_clip_file(src: str | os.PathLike, dst: str | os.PathLike) -> Report:
    """Converts a CLIP archive, then reads the result back: same tensors, a loadable CLIP."""
    source = read_state_dict(src)
    state_dict, report = convert_clip(source)
    save_state_dict(state_dict, dst, metadata={'converted_from': os.path.basename(src)})
    written = read_state_dict(dst)
    assert_same_tensors(written, source)
    build_model(written)  # every key is used
    return report


def convert_denseclip_file(src: str | os.PathLike, dst: str | os.PathLike, model: nn.Module,
                           trust: bool = False) -> Report:
    """Converts a released DenseCLIP checkpoint and checks that the written file loads (with
    ``weights_only=True``) into ``model``, built from the matching config, exactly."""
    converted, report = convert_denseclip(read_released(src, trust))
    check_fit(model, converted['state_dict'], f'checkpoint {os.fspath(src)!r}', CONFIG_HINT)
    report.notes += class_name_notes(converted['meta'], getattr(model, 'class_names', None))
    converted['meta']['converted_from'] = os.path.basename(src)
    torch.save(converted, dst)
    written = read_checkpoint(dst)
    check_fit(model, written['state_dict'], f'the written {os.fspath(dst)!r}', CONFIG_HINT)
    return report
