"""Synthetic data for quick starts and tests, laid out like ADE20K."""
from .synthetic import generate_synthetic_ade20k, synthetic_metainfo

__all__ = ['generate_synthetic_ade20k', 'synthetic_metainfo']
