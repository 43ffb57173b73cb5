"""Mixed precision (``denseclip.engine.optim_wrappers``): ``--amp`` on a machine without CUDA
trains under bfloat16 autocast through ``BFloat16OptimWrapper``."""
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config

from denseclip.engine import BFloat16OptimWrapper, enable_amp

cpu_only = pytest.mark.skipif(
    torch.cuda.is_available(), reason='checks the fallbacks for machines without CUDA')


@cpu_only
def test_enable_amp_uses_bfloat16_on_cpu():
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer={})))
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'BFloat16OptimWrapper'
    with pytest.raises(ValueError, match='OptimWrapper'):
        enable_amp(Config(dict(optim_wrapper=dict(type='MyWrapper', optimizer={}))))


def test_bfloat16_optim_wrapper_autocasts_and_steps():
    model = nn.Linear(4, 2)
    wrapper = BFloat16OptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.ones(3, 4))
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().sum())
    assert model.weight.dtype == torch.float32
    assert not torch.equal(model.weight, before)
