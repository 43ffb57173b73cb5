"""Fixtures of the CLIP tests: a tiny randomly initialised CLIP of each image-tower kind."""
import pytest
import torch

from denseclip.clip import CLIP

from .tiny import TINY_RN, TINY_VIT, make_clip


@pytest.fixture(scope='package', autouse=True)
def single_thread():
    """Tiny tensors gain nothing from intra-op threads; on a busy CPU the thread pool's hand-offs
    made these tests ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=['resnet', 'vit'])
def tiny_config(request) -> dict:
    return dict(TINY_RN if request.param == 'resnet' else TINY_VIT)


@pytest.fixture
def tiny_clip(tiny_config) -> CLIP:
    return make_clip(tiny_config)
