"""Tests of the pre-model prompter."""
import pytest
import torch
from mmseg.registry import MODELS

from denseclip.models.context_decoder import ContextDecoder
from denseclip.models.prompter import PreModelPrompter

TINY = dict(num_contexts=3, visual_dim=12, text_width=10, transformer_width=16,
            transformer_heads=2, transformer_layers=1, dropout=0.0)


def _tiny() -> PreModelPrompter:
    torch.manual_seed(0)
    return PreModelPrompter(**TINY)


def test_build_shapes_and_layout():
    model = MODELS.build(dict(type='PreModelPrompter', **TINY))
    assert isinstance(model, PreModelPrompter)
    assert isinstance(model.decoder, ContextDecoder)
    assert model.queries.shape == (3, 12)
    assert model.decoder.out_dim == 10 and model.decoder.visual_dim == 12
    assert {k.split('.')[0] for k in model.state_dict()} == {'queries', 'decoder'}
    assert model(torch.randn(4, 7, 12)).shape == (4, 3, 10)


def test_default_sizes():
    model = PreModelPrompter()
    assert model.queries.shape == (8, 1024)
    assert model(torch.randn(1, 5, 1024)).shape == (1, 8, 512)


def test_queries_init():
    torch.manual_seed(0)
    queries = PreModelPrompter(num_contexts=64, visual_dim=256, text_width=8,
                               transformer_width=16, transformer_heads=2,
                               transformer_layers=1).queries
    assert queries.std().item() == pytest.approx(0.02, rel=0.1)
    assert queries.abs().max().item() < 2.0


def test_output_is_decoder_of_queries():
    model = _tiny().eval()
    visual = torch.randn(2, 7, 12)
    with torch.no_grad():
        expected = model.decoder(model.queries[None].repeat(2, 1, 1), visual)
        torch.testing.assert_close(model(visual), expected)


def test_contexts_depend_on_the_image():
    model = _tiny().eval()
    visual = torch.randn(2, 7, 12)
    with torch.no_grad():
        out = model(visual)
        single = model(visual[1:])
    assert not torch.allclose(out[0], out[1])
    torch.testing.assert_close(out[1:], single, rtol=1e-5, atol=1e-6)


def test_gradients_reach_queries_and_visual():
    model = _tiny()
    visual = torch.randn(2, 7, 12, requires_grad=True)
    model(visual).square().sum().backward()
    assert model.queries.grad is not None and model.queries.grad.abs().sum() > 0
    assert visual.grad.abs().sum() > 0


def test_rejects_no_contexts():
    with pytest.raises(ValueError, match='num_contexts must be positive, got 0'):
        PreModelPrompter(**{**TINY, 'num_contexts': 0})
