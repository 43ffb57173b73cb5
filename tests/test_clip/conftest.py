"""Fixtures of the CLIP tests: a tiny randomly initialised CLIP of each image-tower kind."""
import pytest

from denseclip.clip import CLIP

from .tiny import TINY_RN, TINY_VIT, make_clip


@pytest.fixture(params=['resnet', 'vit'])
def tiny_config(request) -> dict:
    return dict(TINY_RN if request.param == 'resnet' else TINY_VIT)


@pytest.fixture
def tiny_clip(tiny_config) -> CLIP:
    return make_clip(tiny_config)
