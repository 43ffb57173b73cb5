"""DenseCLIP for mmsegmentation 1.x. Importing the package registers its modules.

``denseclip.apis`` loads its inference helpers (mmseg.apis, matplotlib) on first use, which
keeps ``import denseclip`` (and every tool's start) cheap; the visualiser that configs name is
registered at once.
"""
from .utils.console import quiet_imports

with quiet_imports():  # mmcv and mmseg announce optional parts they lack, once per process
    from . import apis, clip, datasets, engine, models, utils  # noqa: F401

__version__ = '0.1.0'
