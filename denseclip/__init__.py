"""DenseCLIP for mmsegmentation 1.x. Importing the package registers its modules and changes
nothing else: no third-party behaviour (safe checkpoint loading is installed by the tools,
``denseclip.engine.config.prepare_config``), no plotting library.

``denseclip.apis`` (inference and pictures: mmseg.apis, matplotlib) and ``denseclip.analysis``
(FLOPs, benchmarks, training curves) are imported where they are used.
"""
from .engine.console import quiet_imports

with quiet_imports():  # mmcv and mmseg announce optional parts they lack, once per process
    from . import clip, datasets, engine, models  # noqa: F401

__version__ = '0.1.0'
