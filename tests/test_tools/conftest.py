"""Tiny data and models for the tool tests (``run_tool`` is in tests/conftest.py)."""
from pathlib import Path

import pytest
import torch

QUICKSTART_CONFIG = (Path(__file__).resolve().parents[2] /
                     'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py')


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


@pytest.fixture(scope='session')
def quickstart_checkpoint(tmp_path_factory) -> Path:
    """The quickstart model at its seeded initial weights, saved with the dataset's metainfo."""
    from mmengine.config import Config

    from denseclip.apis import init_model
    cfg = Config.fromfile(QUICKSTART_CONFIG)
    torch.manual_seed(0)
    model = init_model(cfg)
    model.init_weights()
    path = tmp_path_factory.mktemp('ckpt') / 'quickstart.pth'
    meta = dict(dataset_meta=dict(cfg.train_dataloader.dataset.metainfo))
    torch.save(dict(state_dict=model.state_dict(), meta=meta), path)
    return path


@pytest.fixture(scope='session')
def quickstart_model(quickstart_checkpoint):
    """That checkpoint loaded by ``init_model``, as the tools load it."""
    from denseclip.apis import init_model
    return init_model(QUICKSTART_CONFIG, str(quickstart_checkpoint))
