"""Checkpoint loading that never runs code from the file and never loads weights that do not
fit the model: the project's safe-loading policy.

- Every file is read by the project's one reader,
  :func:`denseclip.clip.reading.read_checkpoint`. Pickled checkpoints (state dicts,
  DenseCLIP / mmengine checkpoints, resume checkpoints with optimiser and message-hub state)
  are read with ``torch.load(weights_only=True)``. Besides
  tensors and plain Python containers, only the types that mmengine writes into its checkpoints
  are allowed (:data:`SAFE_GLOBALS`, defined in the clip room as
  :data:`denseclip.clip.reading.RUN_CHECKPOINT_GLOBALS`, whose reader of CLIP weights takes
  run checkpoints too): numpy arrays, scalars and dtypes, mmengine's
  ``HistoryBuffer``, and a ``getattr`` that can only fetch ``HistoryBuffer``'s own statistics
  methods (mmengine pickles them as ``getattr(HistoryBuffer, 'mean')``; the real ``getattr``
  would reach any attribute of any allowed object).
- TorchScript archives (OpenAI's ``RN50.pt``, ...) are read with ``torch.jit.load``.
- Anything else is refused with a :class:`~denseclip.clip.CheckpointError` that names the file
  and the globals it would have imported.

mmengine's own loader tries ``weights_only=True`` and silently falls back to
``weights_only=False``; :func:`install` closes that door for every path mmengine loads from
(``load_from``, ``resume``, ``init_cfg=dict(type='Pretrained')``, ``denseclip.apis.init_model``).
It changes mmengine for the whole process, so ``import denseclip`` does not call it:
:func:`denseclip.engine.config.prepare_config` does, which every tool and ``denseclip.apis``
run before they load anything.

mmengine also loads weights non-strictly: a checkpoint of another class count, backbone or crop
size leaves layers at their random initialisation and the run goes on. :func:`fit_checkpoint`
refuses such a checkpoint before it is loaded (:class:`CheckpointFitHook` for the runner,
:func:`load_checkpoint` for inference), unless a partial load was asked for.
"""
import logging
import os.path as osp
from collections import OrderedDict
from typing import Any, Optional
from urllib.parse import urlparse

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader, load_state_dict
from mmengine.utils.dl_utils import hub as mmengine_hub
from mmseg.registry import HOOKS
from torch import nn

from denseclip.clip import StateDictFit, check_fit
from denseclip.clip.reading import RUN_CHECKPOINT_GLOBALS, read_checkpoint


#: What ``torch.load(weights_only=True)`` may build beyond tensors and Python containers: what
#: mmengine's runner writes (defined in the clip room, whose CLIP reader takes run checkpoints too).
SAFE_GLOBALS = RUN_CHECKPOINT_GLOBALS

#: Where a missing checkpoint of a run was named.
MISSING_HINT = ('Check the path given as load_from, --resume, the CHECKPOINT argument of '
                'tools/test.py or init_cfg.checkpoint.')
#: What to do about a damaged checkpoint of a run.
DAMAGED_HINT = ('If a job was killed while writing it, delete it; tools/train.py --resume '
                'continues from the newest intact checkpoint.')


def weights_only_load(file: Any, map_location: Any = None, mmap: bool = False,
                      finite: bool = True) -> Any:
    """What a checkpoint of a run holds, read by the one reader with :data:`SAFE_GLOBALS`.

    Args:
        file: A path or a binary file object.
        map_location: As for ``torch.load``.
        mmap: Map the tensors' storage instead of reading it (zip-format files only).
        finite: Refuse NaN / Inf tensors (off only to read metadata).

    Raises:
        FileNotFoundError: the path does not exist.
        CheckpointError: the file is truncated or not a checkpoint, it holds objects whose
            unpickling could run code, or NaN / Inf.
    """
    return read_checkpoint(file, map_location, allowed_globals=SAFE_GLOBALS,
                           missing_hint=MISSING_HINT, damaged_hint=DAMAGED_HINT, mmap=mmap,
                           finite=finite)


def load_from_local_weights_only(filename: str, map_location: Optional[Any] = None) -> Any:
    """mmengine ``CheckpointLoader`` backend for local paths (the ``''`` scheme).

    Returns what the file holds; for a TorchScript archive, its state dict.
    """
    return weights_only_load(filename, map_location)


def _strict_torch_load(file: Any, map_location: Any = None, weights_only: Any = None) -> Any:
    """Stands in for mmengine's ``_safe_torch_load``: same signature, never unsafe."""
    return weights_only_load(file, map_location)


def _load_url_weights_only(url: str, model_dir: Optional[str] = None,
                           map_location: Any = None, progress: bool = True) -> Any:
    """Stands in for mmengine's ``load_url`` (``http(s)://``, ``open-mmlab://``,
    ``torchvision://``): reads the file from torch's hub cache with :func:`weights_only_load`
    (``torch.hub`` would unpickle it with ``weights_only=False``). Nothing is downloaded at run
    time: a URL that is not in the cache is an error that says where to put the file."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    cached = osp.join(model_dir, osp.basename(urlparse(url).path))
    if not osp.isfile(cached):
        raise FileNotFoundError(
            f'checkpoint {url!r} is not on this machine, and DenseCLIP downloads nothing at run '
            f'time: download it yourself and give its local path in the config, or put it at '
            f'{cached!r}')
    return weights_only_load(cached, map_location)


class _TorchWithStrictLoad:
    """The ``torch`` module as upstream mmengine's remote loaders see it after :func:`install`:
    ``load`` is :func:`_strict_torch_load`, every other name is torch's own."""

    load = staticmethod(_strict_torch_load)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


def install() -> None:
    """Makes every mmengine checkpoint load go through :func:`weights_only_load`.

    Registers :func:`load_from_local_weights_only` for local paths (mmengine's public
    ``CheckpointLoader.register_scheme``). The remote schemes (``pavi://``, ``s3://``,
    ``open-mmlab://``, ...) read files differently on the two mmengine lines, so a feature
    check picks the hook: OneDL's mmengine calls a private ``_safe_torch_load`` (replaced);
    upstream mmengine 0.10.x calls ``torch.load`` from its checkpoint and hub modules (those two
    modules see a ``torch`` whose ``load`` is the strict one). URLs (``http(s)://`` and the
    schemes that resolve to them) go through :func:`_load_url_weights_only` on both.
    Idempotent.
    """
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_weights_only,
                                     force=True)
    mmengine_checkpoint.load_url = _load_url_weights_only
    if hasattr(mmengine_checkpoint, '_safe_torch_load'):
        mmengine_checkpoint._safe_torch_load = _strict_torch_load
    else:
        for module in (mmengine_checkpoint, mmengine_hub):
            module.torch = _TorchWithStrictLoad()


# ------------------------------------------------------------------------------ fit to the model
#: What to do when a checkpoint does not fit the model of the config.
FIT_HINT = ('Use the config the checkpoint was trained with. To fine-tune from it with another '
            'head or class count, train with tools/train.py --partial-load (the weights that do '
            'not fit keep their initial values).')
#: mmengine's loader strips this prefix (``DataParallel`` wrappers); so does the fit check.
WRAPPER_PREFIX = 'module.'


def fit_checkpoint(model: nn.Module, checkpoint: dict, source: str,
                   partial: bool = False) -> StateDictFit:
    """Checks that ``checkpoint`` fits ``model`` exactly, before mmengine loads it.

    ``checkpoint`` (``{'state_dict': ...}`` or a bare state dict) is changed in place: wrapper
    prefixes are stripped and, with ``partial``, what does not fit is replaced by the model's
    own tensors (missing keys added, unexpected ones dropped), so that loading it leaves those
    weights as initialised without a log line per key; a one-line summary is logged instead.

    Args:
        model: The model, possibly wrapped (DDP, ``SegTTAModel``).
        checkpoint: What the file holds.
        source: The file as messages name it (``"checkpoint 'x.pth'"``).
        partial: Load what fits instead of raising.

    Raises:
        CheckpointError: keys are missing, unexpected or of another shape (unless ``partial``);
            see :func:`~denseclip.clip.fit.check_fit`.
    """
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    state_dict = checkpoint.get('state_dict', checkpoint)
    fitted = OrderedDict((key.removeprefix(WRAPPER_PREFIX), value)
                         for key, value in state_dict.items())
    fitted._metadata = getattr(state_dict, '_metadata', OrderedDict())
    # mmengine ignores missing BatchNorm counters; so does the check
    fit = check_fit(model, fitted, source, fix=FIT_HINT, partial=partial,
                    allowed_missing=('*num_batches_tracked',))
    if not fit.fits:
        own = model.state_dict()
        for key in fit.unexpected:
            del fitted[key]
        fitted.update((key, own[key]) for key in [*fit.mismatched, *fit.retyped, *fit.missing])
        print_log(fit.summary(source, type(model).__name__), logger='current',
                  level=logging.WARNING)
    if 'state_dict' in checkpoint:
        checkpoint['state_dict'] = fitted
    else:
        checkpoint.clear()
        checkpoint.update(fitted)
    return fit


def load_checkpoint(model: nn.Module, filename: str) -> dict:
    """Reads ``filename`` with the safe loader and loads it into ``model`` if it fits exactly.

    Returns:
        What the file holds (its ``meta`` names the dataset's classes and palette).

    Raises:
        CheckpointError: the file cannot be read safely, or it does not fit ``model``.
    """
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location='cpu')
    fit_checkpoint(model, checkpoint, f'checkpoint {filename!r}')
    load_state_dict(model, checkpoint.get('state_dict', checkpoint), strict=True)
    return checkpoint


@HOOKS.register_module()
class CheckpointFitHook(Hook):
    """Refuses a checkpoint that does not fit the model, when the runner loads it.

    mmengine's ``Runner.load_checkpoint`` (``load_from``, ``--resume``, the CHECKPOINT of
    ``tools/test.py``) loads non-strictly. This hook checks what the runner read before it is
    loaded (mmengine's ``after_load_checkpoint``), with :func:`fit_checkpoint`.
    :func:`denseclip.engine.config.prepare_config` adds it for every entry point.

    Args:
        partial: Load what fits (fine-tuning from a checkpoint with another head). Never
            applied when resuming.
    """

    priority = 'VERY_HIGH'

    def __init__(self, partial: bool = False) -> None:
        self.partial = partial

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        partial = self.partial and not runner.cfg.get('resume')
        fit_checkpoint(runner.model, checkpoint, f'checkpoint {runner.cfg.get("load_from")!r}',
                       partial)

