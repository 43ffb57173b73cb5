"""Tiny data for the tool tests (``run_tool`` is in tests/conftest.py)."""
from pathlib import Path

import pytest


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory) -> Path:
    """Two training and two validation images of the quickstart's synthetic scenes, 64 px."""
    from denseclip.datasets import generate_synthetic_ade20k
    return generate_synthetic_ade20k(tmp_path_factory.mktemp('synthetic'), num_train=2,
                                     num_val=2, image_size=64)


@pytest.fixture(scope='session')
def data_options(synthetic_root) -> list[str]:
    """``--cfg-options`` that point every dataloader of the quickstart config at the data."""
    return ['--cfg-options'] + [f'{split}_dataloader.dataset.data_root={synthetic_root}'
                                for split in ('train', 'val', 'test')]
