"""Building a model for inference from a config and a checkpoint."""
import os
from typing import Optional, Union

from mmengine.config import Config
from mmseg.apis import init_model as mmseg_init_model
from torch import nn

from denseclip.engine.safe_load import load_checkpoint
from denseclip.utils import revert_sync_bn_cfg
from denseclip.utils.build import load_config


def dataset_meta(meta: dict, model: nn.Module) -> Optional[dict]:
    """The classes and palette of a checkpoint's ``meta`` (mmseg 1.x or 0.x), else the model's
    class names (DenseCLIP) without a palette, else None."""
    if 'dataset_meta' in meta:
        return dict(meta['dataset_meta'])
    if 'CLASSES' in meta:
        return dict(classes=meta['CLASSES'], palette=meta.get('PALETTE'))
    classes = getattr(model, 'class_names', None)
    return dict(classes=classes, palette=None) if classes else None


def init_model(config: Union[str, os.PathLike, Config], checkpoint: Optional[str] = None,
               device: str = 'cpu', cfg_options: Optional[dict] = None) -> nn.Module:
    """mmseg's ``init_model`` for DenseCLIP configs, refusing checkpoints that do not fit.

    Fills ``model.class_names`` from the config's dataset when it is left ``None`` and, on CPU,
    turns SyncBN into BN; builds the model with ``mmseg.apis.init_model``, which loads no CLIP
    weights (the checkpoint holds every weight), then loads the checkpoint only if it fits the
    model key by key and shape by shape. Use it with ``denseclip.apis.inference_model``.

    Args:
        config: Config file or object.
        checkpoint: Checkpoint to load; ``None`` keeps the random initialisation.
        device: ``'cpu'`` or ``'cuda:N'``.
        cfg_options: Overrides merged into the config.

    Raises:
        CheckpointError: the checkpoint cannot be read safely or does not fit the model (the
            message counts and lists the keys and names the likely cause).
    """
    cfg = load_config(config, cfg_options)  # a copy, class names filled in
    if str(device).startswith('cpu'):
        revert_sync_bn_cfg(cfg.model)
    model = mmseg_init_model(cfg, None, device=device)
    if checkpoint is not None:
        meta = load_checkpoint(model, checkpoint).get('meta') or {}
        model.dataset_meta = dataset_meta(meta, model)
    return model
