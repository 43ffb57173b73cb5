"""Synthetic data for quick starts and tests, laid out like ADE20K, and the dataset checks:
:class:`CheckedDataset` raises the first problem while a job loads samples, :func:`scan_loaders`
(``tools/check_dataset.py``) lists every problem of every sample up front, and
:func:`dataset_class_names` reads the class names a dataset config gives."""
from .class_names import dataset_class_names
from .scan import DatasetReport, scan_dataset, scan_loaders
from .synthetic import generate_synthetic_ade20k, synthetic_metainfo
from .validation import CheckedDataset, DataError, check_class_names, wrap_datasets

__all__ = [
    'CheckedDataset', 'DataError', 'DatasetReport', 'check_class_names', 'dataset_class_names',
    'generate_synthetic_ade20k', 'scan_dataset', 'scan_loaders', 'synthetic_metainfo',
    'wrap_datasets'
]
