"""Checks of what a config states, made once by :func:`denseclip.engine.config.prepare_config`
for every entry point: the numbers of the runner and its data loaders, the keyword arguments
of every registered class, and the folders a run writes to.

Each error names the config key (``train_dataloader.batch_size``, ``model.backbone``) and what
was expected, before anything is built or a long job starts.
"""
import difflib
import inspect
import math
import os
import os.path as osp
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, Optional

from mmengine.config import Config
from mmengine.registry import DefaultScope, Registry
from mmengine.runner import Runner
from mmseg.registry import (DATA_SAMPLERS, DATASETS, HOOKS, LOOPS, METRICS, MODELS, OPTIM_WRAPPERS,
                            OPTIMIZERS, PARAM_SCHEDULERS, TRANSFORMS, VISBACKENDS, VISUALIZERS)
from torch import nn
from torch.utils.data import DataLoader

#: The data loaders of a run, as mmengine names them.
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


class ConfigError(ValueError):
    """A config value that cannot work; the message names its key."""


# ----------------------------------------------------------------------------- numbers
def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: What a number must be: (the words of the error, the test).
POSITIVE = ('an integer >= 1', lambda value: _integer(value) and value >= 1)
NON_NEGATIVE = ('an integer >= 0', lambda value: _integer(value) and value >= 0)
SEED = ('an integer in [0, 2**32) or None',
        lambda value: value is None or _integer(value) and 0 <= value < 2**32)
INTERVAL_OR_OFF = ('an integer >= 1 (or -1: no periodic checkpoints)',
                   lambda value: value == -1 or POSITIVE[1](value))


def _number_checks(cfg: Mapping) -> Iterator[tuple[str, Any, tuple]]:
    """``(key, value, (expected, test))`` of every number the run needs in a range."""
    for key in LOADERS:
        loader = cfg.get(key) or {}
        yield f'{key}.batch_size', loader.get('batch_size', 1), POSITIVE
        yield f'{key}.num_workers', loader.get('num_workers', 0), NON_NEGATIVE
    train = cfg.get('train_cfg') or {}
    for name in ('max_iters', 'max_epochs', 'val_interval', 'val_begin'):
        if name in train:
            yield (f'train_cfg.{name}', train[name],
                   NON_NEGATIVE if name == 'val_begin' else POSITIVE)
    hooks = cfg.get('default_hooks') or {}
    if 'interval' in (hooks.get('logger') or {}):
        yield 'default_hooks.logger.interval', hooks['logger']['interval'], POSITIVE
    if 'interval' in (hooks.get('checkpoint') or {}):
        yield 'default_hooks.checkpoint.interval', hooks['checkpoint']['interval'], \
            INTERVAL_OR_OFF
    if 'accumulative_counts' in (cfg.get('optim_wrapper') or {}):
        yield ('optim_wrapper.accumulative_counts',
               cfg['optim_wrapper']['accumulative_counts'], POSITIVE)
    yield 'randomness.seed', (cfg.get('randomness') or {}).get('seed'), SEED


def check_numbers(cfg: Mapping) -> None:
    """Data-loader and runner numbers in range: ``batch_size >= 1``, ``num_workers >= 0``,
    ``max_iters >= 1``, intervals ``>= 1``, the learning rate finite and ``>= 0``, ...

    Raises:
        ConfigError: naming the first key out of range, its value and what was expected.
    """
    for key, value, (expected, fits) in _number_checks(cfg):
        if not fits(value):
            raise ConfigError(f'{key}={value!r}: expected {expected}')
    optimizer = (cfg.get('optim_wrapper') or {}).get('optimizer') or {}
    lr = optimizer.get('lr') if isinstance(optimizer, Mapping) else None
    if lr is not None and (not isinstance(lr, (int, float)) or isinstance(lr, bool)
                           or not math.isfinite(lr) or lr < 0):
        raise ConfigError(f'optim_wrapper.optimizer.lr={lr!r}: expected a finite number >= 0')


def _did_you_mean(word: str, choices) -> str:
    """``"; did you mean 'a' or 'b'?"`` for the closest of ``choices``, else ``''``."""
    close = difflib.get_close_matches(word, sorted(choices), n=2)
    return f'; did you mean {" or ".join(map(repr, close))}?' if close else ''


# ----------------------------------------------------------------------------- the file and keys
def read_config(path: str | os.PathLike) -> Config:
    """``Config.fromfile``, with a missing path or a folder named as such.

    Raises:
        FileNotFoundError: ``path`` is not a file.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        what = 'is a folder, not a config file' if osp.isdir(path) else 'does not exist'
        raise FileNotFoundError(f'config file {path!r} {what} (configs/ holds the configs of '
                                'this project)')
    return Config.fromfile(path)


#: Top-level keys that mmengine's runner reads besides those of a config file.
RUNNER_KEYS = frozenset(inspect.signature(Runner.__init__).parameters) - {'self'} | {
    'runner_type', 'cfg', 'launcher', 'work_dir', 'resume', 'load_from', 'tta_model',
    'tta_pipeline', 'compile', 'sync_bn', 'model_wrapper_cfg', 'find_unused_parameters',
    'strategy', 'custom_imports'}
#: What a data-loader dict may hold: torch's ``DataLoader`` arguments, and what mmengine's
#: ``build_dataloader`` takes out first.
LOADER_KEYS = frozenset(inspect.signature(DataLoader.__init__).parameters) - {'self'} | {
    'num_batch_per_epoch'}


def check_option_keys(cfg: Mapping, options: Mapping) -> None:
    """Every ``--cfg-options`` key starts with a key the config has or the runner reads:
    ``trian_cfg.max_iters=10`` would otherwise add a key that nothing reads.

    Raises:
        ConfigError: naming the option, and the closest key.
    """
    known = set(cfg.keys()) | RUNNER_KEYS
    for option in options:
        top = option.split('.', 1)[0]
        if top not in known:
            raise ConfigError(f'--cfg-options {option}: the config has no key {top!r} and the '
                              f'runner reads none{_did_you_mean(top, known)}')


# ----------------------------------------------------------------------------- keywords
def accepted_arguments(cls: type) -> Optional[set[str]]:
    """The keyword arguments that building ``cls`` accepts, or None when they cannot be known.

    Follows ``**kwargs`` up the class hierarchy: a class whose ``__init__`` takes ``**kwargs``
    passes them to its base (mmseg's heads to ``BaseDecodeHead``); the walk ends at the first
    ``__init__`` without ``**kwargs``, or at ``nn.Module`` (which takes none). A chain that
    reaches ``object`` consumes its ``**kwargs`` some other way: unknown.
    """
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is nn.Module:
            return names
        init = vars(klass).get('__init__')
        if init is None:
            continue
        if klass is object:
            return None
        try:
            parameters = list(inspect.signature(init).parameters.values())[1:]
        except (TypeError, ValueError):
            return None
        names |= {p.name for p in parameters
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            return names
    return None


def _lookup(registry: Registry, kind: Any) -> Optional[type]:
    if isinstance(kind, type):
        return kind
    if not isinstance(kind, str):
        return None
    try:
        found = registry.get(kind)
    except (KeyError, ImportError):  # a scope that is not installed
        return None
    return found if isinstance(found, type) else None


#: Registries of the dicts under these keys, whatever the registry of their parent.
CHILD_REGISTRIES = dict(pipeline=TRANSFORMS, optimizer=OPTIMIZERS, sampler=DATA_SAMPLERS,
                        vis_backends=VISBACKENDS, dataset=DATASETS)
#: Keys that the builder of a registry takes out of a dict before calling the constructor.
BUILDER_KEYS = {OPTIM_WRAPPERS: {'constructor', 'paramwise_cfg'},
                PARAM_SCHEDULERS: {'convert_to_iter_based'}}


def _typed_dicts(node: Any, key: str, registry: Registry) -> Iterator[tuple[str, Mapping,
                                                                               Registry]]:
    """Every dict with a ``type`` under ``node`` with its key and the registry that builds it.

    ``*_cfg`` dicts are left out: helpers consume them, not a constructor (``norm_cfg``'s
    ``requires_grad`` is ``build_norm_layer``'s), and ``init_cfg`` belongs to another registry.
    Datasets' ``pipeline`` entries are transforms, an optimiser wrapper's ``optimizer`` an
    optimiser, and so on (:data:`CHILD_REGISTRIES`); inside the model everything is a model.
    """
    if isinstance(node, Mapping):
        if 'type' in node:
            yield key, node, registry
        for name, value in node.items():
            if name == 'type' or name.endswith('_cfg'):
                continue
            child = registry if registry is MODELS else CHILD_REGISTRIES.get(name, registry)
            yield from _typed_dicts(value, f'{key}.{name}', child)
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _typed_dicts(value, f'{key}[{index}]', registry)


def _config_roots(cfg: Mapping) -> Iterator[tuple[str, Any, Registry]]:
    """The parts of a config that the runner builds from registries, with their registry."""
    yield 'model', cfg.get('model'), MODELS
    for key in LOADERS:
        yield key, cfg.get(key), DATASETS
    for key, registry in (('default_hooks', HOOKS), ('custom_hooks', HOOKS),
                          ('train_cfg', LOOPS), ('val_cfg', LOOPS), ('test_cfg', LOOPS),
                          ('optim_wrapper', OPTIM_WRAPPERS), ('param_scheduler', PARAM_SCHEDULERS),
                          ('val_evaluator', METRICS), ('test_evaluator', METRICS),
                          ('visualizer', VISUALIZERS)):
        yield key, cfg.get(key), registry


def check_keywords(cfg: Mapping) -> None:
    """Every argument a config gives a registered class is one its constructor accepts.

    Without this a misspelled argument (``model.backbone.layres``) ends in Python's
    ``TypeError: __init__() got an unexpected keyword argument`` deep inside the build, with
    no config key. Classes whose accepted arguments cannot be known
    (:func:`accepted_arguments`) and types that are not registered are left to the build.

    Raises:
        ConfigError: naming the config key of the dict, the argument, the closest accepted
            ones and the class.
    """
    for loader in LOADERS:
        unknown = sorted(set(cfg.get(loader) or {}) - LOADER_KEYS)
        if unknown:
            raise ConfigError(f'{loader}.{unknown[0]}: a data loader takes no argument '
                              f'{unknown[0]!r}{_did_you_mean(unknown[0], LOADER_KEYS)}')
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope') or 'mmseg'):
        for root, node, registry in _config_roots(cfg):
            for key, typed, reg in _typed_dicts(node, root, registry):
                cls = _lookup(reg, typed['type'])
                accepted = accepted_arguments(cls) if cls is not None else None
                if accepted is None:
                    continue
                unknown = [name for name in typed if name not in accepted
                           and name not in ('type', '_scope_', *BUILDER_KEYS.get(reg, ()))]
                if unknown:
                    raise ConfigError(
                        f'{key}.{unknown[0]}: {cls.__name__} takes no argument '
                        f'{unknown[0]!r}{_did_you_mean(unknown[0], accepted)} Its arguments '
                        f'are: {", ".join(sorted(accepted))}.')


# ----------------------------------------------------------------------------- output folders
def check_writable(folder: str, what: str) -> None:
    """Creates ``folder`` if needed and writes (and deletes) a probe file there, so that a
    missing parent, a read-only folder or a full disk is found before long work starts.

    Args:
        folder: The folder.
        what: How the user named it, for the message (``'--out'``, ``'work_dir'``).

    Raises:
        ConfigError: naming ``what``, the folder and the operating system's reason.
    """
    probe = osp.join(folder, f'.write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}')
    try:
        os.makedirs(folder, exist_ok=True)
        with open(probe, 'wb') as f:
            f.write(b'0' * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise ConfigError(f'{what}: cannot write to {folder!r} ({err.strerror or err}); choose '
                          'a folder you can write to, with free space') from None
    finally:
        if osp.exists(probe):
            os.remove(probe)


def check_output_file(path: str, what: str) -> None:
    """A file a tool will write: not a folder, and its folder writable (:func:`check_writable`).

    Raises:
        ConfigError: naming ``what`` (the option, ``'--out'``), the path and the reason.
    """
    if osp.isdir(path):
        raise ConfigError(f'{what} {path!r} is a folder; give the path of a file to write')
    check_writable(osp.dirname(osp.abspath(path)), f'{what} {path!r}')
