"""Synthetic data for quick starts and tests, laid out like ADE20K, and dataset checks."""
from .synthetic import generate_synthetic_ade20k, synthetic_metainfo
from .validation import CheckedDataset, DataError, check_class_names, wrap_datasets

__all__ = [
    'CheckedDataset', 'DataError', 'check_class_names', 'generate_synthetic_ade20k',
    'synthetic_metainfo', 'wrap_datasets'
]
