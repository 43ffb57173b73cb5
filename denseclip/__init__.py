"""DenseCLIP for mmsegmentation 1.x. Importing the package registers its modules."""
from . import apis, clip, datasets, engine, models, utils  # noqa: F401

__version__ = '0.1.0'
