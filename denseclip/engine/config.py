"""One preparation of a config for every entry point: the tools and ``denseclip.apis``.

``tools/train.py`` and ``tools/test.py`` hand the prepared config to mmengine's runner;
``denseclip.apis.init_model``, the inferencer, ``tools/benchmark.py`` and
``tools/get_flops.py`` build the model from it in this process (:func:`build_segmentor`).
What each entry point adds of its own (``--resume``, ``--show-dir``, ``--out``) stays in it.
"""
import copy
import os
import os.path as osp
from typing import Optional, Union

from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules
from torch import nn

from denseclip.datasets import (check_class_names, dataset_class_names, fill_palette,
                                wrap_datasets)

from . import safe_load
from .checks import (LOADERS, check_keywords, check_numbers, check_option_keys, check_writable,
                     read_config)
from .device import check_device
from .dist import adapt_cfg_to_cpu, revert_sync_bn_cfg
from .optim_wrappers import enable_amp
from .workdir import WorkDirLockHook

#: Where a run's logs and checkpoints go unless ``--work-dir`` or the config say otherwise.
WORK_DIRS = './work_dirs'


def fill_class_names(cfg: Config) -> Config:
    """Sets ``cfg.model.class_names`` from the dataset when the config leaves it ``None``.

    Looks at the train, then the test, then the val dataloader. Models without a
    ``class_names`` key (plain mmseg segmentors) are left as they are.
    """
    model = cfg.get('model', {})
    if 'class_names' not in model or model['class_names'] is not None:
        return cfg
    for key in ('train_dataloader', 'test_dataloader', 'val_dataloader'):
        loader = cfg.get(key)
        if loader and loader.get('dataset'):
            model['class_names'] = list(dataset_class_names(loader['dataset'], f'{key}.dataset'))
            return cfg
    raise ValueError('model.class_names is None and the config has no dataloader to take '
                     'them from; set model.class_names')


def use_tta(cfg: Config) -> None:
    """Tests with the config's multi-scale + flip ``tta_pipeline`` and ``tta_model``."""
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def prepare_config(config: Union[str, os.PathLike, Config, ConfigDict],
                   cfg_options: Optional[dict] = None,
                   *,
                   device: Optional[str] = None,
                   launcher: Optional[str] = None,
                   work_dir: Optional[str] = None,
                   amp: bool = False,
                   partial_load: bool = False,
                   tta: bool = False,
                   check_data: bool = False) -> Config:
    """Reads a config and prepares it for a run: the one path of every entry point.

    In this order:

    1. ``device`` must exist on this machine; ``config`` is read (a path, which must exist) or
       taken as it is (a config object, changed in place); ``launcher`` is set, then
       ``cfg_options`` are merged (so they may override it), each of whose top-level keys must
       be one the config or the runner knows.
    2. Safe loading is installed (:func:`denseclip.engine.safe_load.install`): every
       checkpoint this process reads from now on is read ``weights_only``, without mmengine's
       fallback, and refused if it holds NaN or Inf. ``import denseclip`` never does this;
       preparing a config for a run does.
    3. The config's numbers (batch sizes, workers, iterations, intervals, seed) and the
       arguments of every registered class are checked (:mod:`denseclip.engine.checks`).
    4. ``model.class_names`` left ``None`` is filled from the dataset metainfo
       (:func:`fill_class_names`); the names must be distinct, and with ``check_data`` match
       every dataset's classes. A dataset whose metainfo names classes but no colours gets
       :func:`~denseclip.datasets.default_palette`, the one every tool uses.
    5. A ``CheckpointFitHook`` (added unless the config lists one) refuses a ``load_from`` or
       ``--resume`` checkpoint that does not fit the model; ``partial_load`` loads what fits of
       ``load_from``. A ``WorkDirLockHook`` keeps a second training run out of the work dir.
    6. ``tta``: the test dataloader and the model become the config's test-time augmentation.
    7. ``amp``: the optimiser wrapper trains in mixed precision (fp16 on GPUs, bfloat16 on
       CPUs).
    8. ``check_data``: every dataloader's dataset is wrapped in ``CheckedDataset`` (clear
       errors for missing, unpaired, corrupt or mislabelled files).
    9. For mmengine's runner (``device=None``): ``cfg.work_dir`` is ``work_dir``, else the
       config's, else ``./work_dirs/CONFIG_NAME``, and must be writable. The runner picks
       CUDA where there is one
       and turns SyncBN into BN itself in a single process; on a machine without CUDA the
       config is adapted (SyncBN -> BN, fp16 -> bfloat16, gloo; see
       :func:`~denseclip.engine.dist.adapt_cfg_to_cpu`). For a model built in this process
       (a ``device``: ``'cpu'``, ``'cuda:0'``), without a process group, SyncBN becomes BN.

    Args:
        config: A config file, or a ``Config`` (or the ``ConfigDict`` of mmengine's
            inferencers), prepared in place: pass a copy to keep the original.
        cfg_options: Overrides, as ``--cfg-options`` gives them.
        device: ``None`` for the runner, else the device of a model built outside it.
        launcher: The runner's job launcher (``'none'``, ``'pytorch'``, ``'slurm'``, ...).
        work_dir: Where the runner writes logs and checkpoints.
        amp: Train in mixed precision (``tools/train.py --amp``).
        partial_load: Fine-tune from what fits of ``load_from`` (``--partial-load``).
        tta: Test with ``tta_pipeline`` and ``tta_model`` (``tools/test.py --tta``).
        check_data: Check the datasets while samples are loaded (training and testing).

    Returns:
        The prepared config.

    Raises:
        ValueError: the class names cannot be filled in, are repeated or do not match a
            dataset; a config value is out of range or an argument is unknown
            (:class:`~denseclip.engine.checks.ConfigError`); the work dir is not writable.
    """
    if device is not None:
        check_device(device)
    cfg = read_config(config) if isinstance(config, (str, os.PathLike)) else config
    if launcher is not None:
        cfg.launcher = launcher
    if cfg_options:
        check_option_keys(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    safe_load.install()
    check_numbers(cfg)
    check_keywords(cfg)
    fill_class_names(cfg)
    for key in LOADERS:  # one palette everywhere for classes that name no colours
        if (cfg.get(key) or {}).get('dataset'):
            fill_palette(cfg[key]['dataset'])
    if check_data:
        check_class_names(cfg)
    add_hook(cfg, safe_load.CheckpointFitHook, **({'partial': True} if partial_load else {}))
    add_hook(cfg, WorkDirLockHook)
    if tta:
        use_tta(cfg)
    if amp:
        enable_amp(cfg)
    if check_data:  # after the TTA pipeline is in place: the wrapper holds the dataset
        wrap_datasets(cfg)
    if device is None:
        _prepare_runner(cfg, work_dir)
    else:
        revert_sync_bn_cfg(cfg.model)
    return cfg


def _prepare_runner(cfg: Config, work_dir: Optional[str]) -> None:
    """The work dir (given > the config's > ``./work_dirs/CONFIG_NAME``), then the device."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        name = osp.splitext(osp.basename(cfg.filename or 'config'))[0]
        cfg.work_dir = osp.join(WORK_DIRS, name)
    check_writable(cfg.work_dir, 'work_dir')
    adapt_cfg_to_cpu(cfg)


def add_hook(cfg: Config, hook_class: type, **settings) -> None:
    """Appends ``dict(type=hook_class.__name__, **settings)`` to ``cfg.custom_hooks``, or, if
    the config lists a hook of that type already (a dict or a built hook), gives it
    ``settings``."""
    hooks = list(cfg.get('custom_hooks') or [])
    name = hook_class.__name__
    listed = next((hook for hook in hooks if isinstance(hook, hook_class) or isinstance(
        hook, dict) and hook.get('type') in (name, hook_class)), None)
    if listed is None:
        hooks.append(dict(type=name, **settings))
    elif isinstance(listed, dict):
        listed.update(settings)
    else:
        for key, value in settings.items():
            setattr(listed, key, value)
    cfg.custom_hooks = hooks


def build_segmentor(cfg: Config) -> nn.Module:
    """Builds ``cfg.model`` with random weights on the CPU, in eval mode.

    ``init_weights`` is not called, so no checkpoint (CLIP archive, ImageNet weights) is read.
    ``cfg`` comes from :func:`prepare_config` with a device (so SyncBN is BN); it is not
    modified.
    """
    register_all_modules(init_default_scope=False)
    # nested modules (the data preprocessor ...) are looked up in the config's scope
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmseg')):
        return MODELS.build(copy.deepcopy(cfg.model)).eval()
