"""Tests of the ContextDecoder against the released layout and a naive re-computation."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import nn

from denseclip.models.context_decoder import ContextDecoder

def _tiny(**kwargs) -> ContextDecoder:
    torch.manual_seed(0)
    cfg = dict(transformer_width=16, transformer_heads=2, transformer_layers=2, visual_dim=12,
               dropout=0.1)
    cfg.update(kwargs)
    return ContextDecoder(**cfg).eval()


def _naive_attention(attn: nn.Module, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V per head, written out with explicit loops over heads."""
    heads = attn.heads
    d = q.shape[-1] // heads
    qp, kp, vp = q @ attn.q_proj.weight.T, kv @ attn.k_proj.weight.T, kv @ attn.v_proj.weight.T
    outs = []
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        weights = torch.softmax(qp[..., sl] @ kp[..., sl].transpose(-1, -2) / math.sqrt(d), -1)
        outs.append(weights @ vp[..., sl])
    return torch.cat(outs, -1) @ attn.proj.weight.T + attn.proj.bias


def _ln(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def _naive_layer(layer: nn.Module, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    q = _ln(x, layer.norm1)
    x = x + _naive_attention(layer.self_attn, q, q)
    x = x + _naive_attention(layer.cross_attn, _ln(x, layer.norm2), memory)
    fc1, fc2 = layer.mlp[0], layer.mlp[3]
    hidden = _ln(x, layer.norm3) @ fc1.weight.T + fc1.bias
    hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))  # exact GELU
    return x + hidden @ fc2.weight.T + fc2.bias


def _randomise(module: nn.Module) -> None:
    """Non-trivial values everywhere (the default init has zero biases and unit norms)."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)


def test_state_dict_matches_released_checkpoint(reference_keys):
    prefix = 'context_decoder.'
    reference = {key[len(prefix):]: shape for key, (shape, _) in
                 reference_keys('denseclip_fpn_res50_512x512_80k').items()
                 if key.startswith(prefix)}
    assert reference, 'no context_decoder keys in the reference key list'
    model = ContextDecoder(transformer_width=256, transformer_heads=4, transformer_layers=3,
                           visual_dim=1024)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == reference


def test_registry_build_and_shapes():
    model = MODELS.build(dict(type='ContextDecoder', transformer_width=16, transformer_heads=2,
                              transformer_layers=1, visual_dim=12, out_dim=20))
    assert isinstance(model, ContextDecoder)
    out = model(torch.randn(3, 5, 12), torch.randn(3, 7, 12))
    assert out.shape == (3, 5, 20)
    assert _tiny()(torch.randn(2, 4, 12), torch.randn(2, 9, 12)).shape == (2, 4, 12)


def test_init():
    model = ContextDecoder(transformer_width=64, transformer_heads=4, transformer_layers=1,
                           visual_dim=256)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            assert module.weight.std().item() == pytest.approx(0.02, rel=0.1)
            assert module.bias is None or not module.bias.any()
        elif isinstance(module, nn.LayerNorm):
            assert (module.weight == 1).all() and not module.bias.any()
    layer = model.decoder[0]
    assert layer.self_attn.q_proj.bias is None and layer.cross_attn.v_proj.bias is None
    assert layer.dropout.p == layer.mlp[2].p == layer.self_attn.proj_drop.p == 0.1
    assert isinstance(layer.mlp[1], nn.GELU)


def test_layer_matches_naive_attention():
    model = _tiny()
    _randomise(model)
    layer = model.decoder[0]
    x, memory = torch.randn(2, 4, 16), torch.randn(2, 9, 16)
    with torch.no_grad():
        torch.testing.assert_close(layer.self_attn(x, x, x),
                                   _naive_attention(layer.self_attn, x, x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(layer(x, memory), _naive_layer(layer, x, memory),
                                   rtol=1e-5, atol=1e-5)


def test_forward_matches_naive_pipeline():
    model = _tiny(out_dim=6)
    _randomise(model)
    text, visual = torch.randn(2, 3, 12), torch.randn(2, 9, 12)
    with torch.no_grad():
        lin = model.memory_proj[1]
        memory = _ln(_ln(visual, model.memory_proj[0]) @ lin.weight.T + lin.bias,
                     model.memory_proj[2])
        lin = model.text_proj[1]
        x = _ln(text, model.text_proj[0]) @ lin.weight.T + lin.bias
        for layer in model.decoder:
            x = _naive_layer(layer, x, memory)
        lin = model.out_proj[1]
        expected = _ln(x, model.out_proj[0]) @ lin.weight.T + lin.bias
        torch.testing.assert_close(model(text, visual), expected, rtol=1e-5, atol=1e-5)


def test_batch_elements_are_independent():
    model = _tiny()
    text, visual = torch.randn(3, 4, 12), torch.randn(3, 9, 12)
    with torch.no_grad():
        batched = model(text, visual)
        single = model(text[1:2], visual[1:2])
    torch.testing.assert_close(batched[1:2], single, rtol=1e-5, atol=1e-6)


def test_zero_out_proj_gives_zero_output():
    model = _tiny()
    nn.init.zeros_(model.out_proj[1].weight)
    out = model(torch.randn(2, 4, 12), torch.randn(2, 9, 12))
    assert not out.any()


def test_dropout_active_only_in_training():
    model = _tiny(dropout=0.5)
    text, visual = torch.randn(2, 4, 12), torch.randn(2, 9, 12)
    with torch.no_grad():
        torch.testing.assert_close(model(text, visual), model(text, visual))
        model.train()
        assert not torch.allclose(model(text, visual), model(text, visual))


def test_gradients_reach_inputs_and_parameters():
    model = _tiny()
    text = torch.randn(2, 4, 12, requires_grad=True)
    visual = torch.randn(2, 9, 12, requires_grad=True)
    model(text, visual).square().sum().backward()
    assert text.grad.abs().sum() > 0 and visual.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize('kwargs, message', [
    (dict(transformer_width=16, transformer_heads=3),
     'transformer_width 16 .*transformer_heads 3'),
    (dict(visual_dim=0), 'visual_dim must be positive, got 0'),
    (dict(out_dim=-1), 'out_dim must be positive, got -1'),
])
def test_rejects_inconsistent_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _tiny(**kwargs)


def test_uses_fused_attention(monkeypatch):
    calls = []
    original = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs.get('dropout_p'))
        return original(*args, **kwargs)

    monkeypatch.setattr(F, 'scaled_dot_product_attention', spy)
    _tiny(transformer_layers=1).train()(torch.randn(1, 2, 12), torch.randn(1, 3, 12))
    assert calls == [0.0, 0.0]
