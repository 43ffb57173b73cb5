"""Building a segmentor from a config for measurements: no weights, no dataset."""
import copy
import os
from typing import Optional, Union

from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules
from torch import nn

from .class_names import fill_class_names
from .dist import revert_sync_bn_cfg


def load_config(config: Union[str, os.PathLike, Config],
                cfg_options: Optional[dict] = None) -> Config:
    """Reads ``config`` (a path or a ``Config``, copied), merges ``cfg_options`` and fills
    ``model.class_names`` from the dataset metainfo when the config leaves it ``None``."""
    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
    else:
        cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    fill_class_names(cfg)
    return cfg


def build_segmentor(cfg: Config) -> nn.Module:
    """Builds ``cfg.model`` with random weights on the CPU, in eval mode.

    ``init_weights`` is not called, so no checkpoint (CLIP archive, ImageNet weights) is read;
    SyncBN becomes BN (a single process, possibly without CUDA). The config is not modified.
    """
    register_all_modules(init_default_scope=False)
    model_cfg = copy.deepcopy(cfg.model)
    revert_sync_bn_cfg(model_cfg)
    # nested modules (the data preprocessor ...) are looked up in the config's scope
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmseg')):
        return MODELS.build(model_cfg).eval()
