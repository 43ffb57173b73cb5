"""Run mmengine's (distributed) training and testing on machines without CUDA.

With a CPU build of torch, mmengine assumes a GPU as soon as a launcher is given:

- ``mmengine.dist.init_dist`` calls ``torch.cuda.set_device`` before creating the process
  group, which raises;
- ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]`` to DDP, which rejects device ids
  for a CPU module;
- ``torch.nn.SyncBatchNorm`` refuses CPU tensors.

:func:`adapt_cfg_to_cpu` works around all three before the ``Runner`` is built. It opens a
gloo process group itself (``Runner.setup_env`` only calls ``init_dist`` when no group is
initialised yet, so the runner still sees a distributed run through ``cfg.launcher``), sets
``model_wrapper_cfg.device_ids=None`` (keys given there override the runner's default
``device_ids``) and turns every SyncBN norm config into BN. On CUDA machines it does nothing.
"""
import datetime
import os
import subprocess
from typing import Any, List, Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log
from mmseg.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

from .optim_wrappers import amp_to_bf16

SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN')
DEFAULT_PORT = '29500'  # torch.distributed's default


def _env_from_slurm() -> None:
    """Export torch.distributed's env variables from SLURM's (as mmengine does)."""
    env = os.environ
    if 'MASTER_ADDR' not in env:
        nodes = env['SLURM_NODELIST']
        env['MASTER_ADDR'] = subprocess.getoutput(
            f'scontrol show hostname {nodes} | head -n1')
    env.setdefault('MASTER_PORT', DEFAULT_PORT)
    env['WORLD_SIZE'] = env['SLURM_NTASKS']
    env['RANK'] = env['SLURM_PROCID']
    env['LOCAL_RANK'] = env.get('SLURM_LOCALID', '0')


def _env_from_mpi() -> None:
    """Export torch.distributed's env variables from Open MPI's."""
    env = os.environ
    if 'MASTER_ADDR' not in env:
        raise KeyError('The environment variable MASTER_ADDR is not set '
                       '(required with --launcher mpi)')
    env.setdefault('MASTER_PORT', DEFAULT_PORT)
    env['WORLD_SIZE'] = env['OMPI_COMM_WORLD_SIZE']
    env['RANK'] = env['OMPI_COMM_WORLD_RANK']
    env['LOCAL_RANK'] = env['OMPI_COMM_WORLD_LOCAL_RANK']


def init_cpu_dist(launcher: str,
                  backend: str = 'gloo',
                  timeout: Optional[float] = None) -> None:
    """Initialise the default process group without touching CUDA.

    Args:
        launcher: ``'pytorch'`` (torchrun sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
            ``MASTER_PORT``), ``'slurm'`` or ``'mpi'``.
        backend: A backend that works on CPU tensors.
        timeout: Seconds to wait for the other processes; torch's default if None.
    """
    if torch_dist.is_initialized():
        return
    if launcher == 'slurm':
        _env_from_slurm()
    elif launcher == 'mpi':
        _env_from_mpi()
    elif launcher != 'pytorch':
        raise ValueError(f'Invalid launcher {launcher!r}: expected '
                         "'pytorch', 'slurm' or 'mpi'")
    kwargs = {}
    if timeout is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=timeout)
    torch_dist.init_process_group(
        backend=backend,
        init_method='env://',
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        **kwargs)


def revert_sync_bn_cfg(cfg: Any, path: str = '') -> List[str]:
    """Replace ``type='SyncBN'`` (and mmcv's ``'MMSyncBN'``) by ``'BN'``, in place.

    Args:
        cfg: A config, or any nesting of dicts, lists and tuples.
        path: Dotted location of ``cfg``, used to name what was changed.

    Returns:
        The dotted paths of the dicts that were changed.
    """
    changed = []
    if isinstance(cfg, (Config, dict)):
        if cfg.get('type') in SYNC_BN_TYPES:
            cfg['type'] = 'BN'
            changed.append(path)
        items = cfg.items()
    elif isinstance(cfg, (list, tuple)):
        items = enumerate(cfg)
    else:
        return changed
    for key, value in items:
        changed += revert_sync_bn_cfg(value, f'{path}.{key}' if path else str(key))
    return changed


def adapt_cfg_to_cpu(cfg: Config) -> None:
    """Make a config that was written for GPUs run on CPUs; no-op when CUDA is available.

    Reverts SyncBN to BN, replaces fp16 AMP by bfloat16 autocast and, for a distributed
    run (``cfg.launcher`` other than ``'none'``), initialises a gloo process group and
    asks for DDP without device ids.
    """
    if torch.cuda.is_available():
        return
    reverted = revert_sync_bn_cfg(cfg)
    if cfg.pop('sync_bn', None) is not None:
        reverted.append('sync_bn')
    if reverted:
        print_log(
            'CUDA is unavailable and torch.nn.SyncBatchNorm refuses CPU tensors: '
            f'SyncBN -> BN in {", ".join(reverted)}',
            logger='current')
    if 'optim_wrapper' in cfg:
        amp_to_bf16(cfg)

    launcher = cfg.get('launcher', 'none')
    if launcher == 'none':
        return
    cfg.merge_from_dict({'env_cfg.dist_cfg.backend': 'gloo'})
    init_cpu_dist(launcher, timeout=cfg.env_cfg.dist_cfg.get('timeout'))
    wrapper_cfg = cfg.get('model_wrapper_cfg') or dict(
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_type = wrapper_cfg.setdefault('type', 'MMDistributedDataParallel')
    if isinstance(wrapper_type, str):
        wrapper_type = MODEL_WRAPPERS.get(wrapper_type)
    if issubclass(wrapper_type, DistributedDataParallel):
        wrapper_cfg['device_ids'] = None  # DDP takes no device ids for a CPU module
    cfg.model_wrapper_cfg = wrapper_cfg
    print_log(
        f'CUDA is unavailable: gloo process group initialised, rank '
        f'{torch_dist.get_rank()} of {torch_dist.get_world_size()}',
        logger='current')
