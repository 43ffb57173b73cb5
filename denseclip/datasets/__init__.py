"""Synthetic data for quick starts and tests, laid out like ADE20K, and the dataset checks:
:class:`CheckedDataset` raises the first problem while a job loads samples, :func:`scan_loaders`
(``tools/check_dataset.py``) lists every problem of every sample up front, and
:func:`dataset_class_names` reads the class names a dataset config gives. Image-caption pairs
for contrastive CLIP training: :class:`ImageTextDataset` and CLIP's crops as transforms."""
from .class_names import dataset_class_names, default_palette, fill_palette
from .image_text import ImageTextDataset
from .scan import DatasetReport, scan_dataset, scan_loaders
from .synthetic import (generate_synthetic_ade20k, generate_synthetic_imagefolder,
                        synthetic_metainfo)
from .transforms import CLIPRandomResizedCrop, CLIPResizeCenterCrop, PackImageTextInputs
from .validation import CheckedDataset, DataError, check_class_names, wrap_datasets

__all__ = [
    'CLIPRandomResizedCrop', 'CLIPResizeCenterCrop', 'CheckedDataset', 'DataError',
    'DatasetReport', 'ImageTextDataset', 'PackImageTextInputs', 'check_class_names',
    'dataset_class_names', 'default_palette', 'fill_palette', 'generate_synthetic_ade20k',
    'generate_synthetic_imagefolder', 'scan_dataset', 'scan_loaders', 'synthetic_metainfo',
    'wrap_datasets'
]
