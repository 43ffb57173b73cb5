"""Building a model for inference from a config and a checkpoint."""
import os
from typing import Optional, Union

from mmengine.config import Config
from mmseg.apis import init_model as mmseg_init_model
from torch import nn

from denseclip.utils import revert_sync_bn_cfg
from denseclip.utils.build import load_config


def init_model(config: Union[str, os.PathLike, Config], checkpoint: Optional[str] = None,
               device: str = 'cpu', cfg_options: Optional[dict] = None) -> nn.Module:
    """mmseg's ``init_model`` for DenseCLIP configs.

    Fills ``model.class_names`` from the config's dataset when it is left ``None`` and, on CPU,
    turns SyncBN into BN, then defers to ``mmseg.apis.init_model``, which loads no CLIP weights
    (the checkpoint holds every weight). Use it with ``denseclip.apis.inference_model``.

    Args:
        config: Config file or object.
        checkpoint: Checkpoint to load; ``None`` keeps the random initialisation.
        device: ``'cpu'`` or ``'cuda:N'``.
        cfg_options: Overrides merged into the config.
    """
    cfg = load_config(config, cfg_options)  # a copy, class names filled in
    if str(device).startswith('cpu'):
        revert_sync_bn_cfg(cfg.model)
    return mmseg_init_model(cfg, checkpoint, device=device)
