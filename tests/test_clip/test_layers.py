"""Building blocks of the CLIP towers against PyTorch's modules and hand-written references."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from denseclip.clip.layers import (DropPath, MultiheadSelfAttention, QuickGELU,
                                   ResidualAttentionBlock, Transformer, resize_grid_embedding)

from .tiny import randomize_


def causal_mask(length: int) -> torch.Tensor:
    """OpenAI's text mask: ``-inf`` above the diagonal, as an additive float mask."""
    return torch.full((length, length), float('-inf')).triu(1)


def naive_attention(x, in_proj_weight, in_proj_bias, out_proj, heads, mask=None):
    """Multi-head self-attention written out with matrix products on ``[L, B, C]``."""
    length, batch, width = x.shape
    q, k, v = F.linear(x, in_proj_weight, in_proj_bias).chunk(3, dim=-1)

    def split(t):  # [L, B, C] -> [B, h, L, C/h]
        return t.reshape(length, batch, heads, width // heads).permute(1, 2, 0, 3)

    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(width // heads)
    if mask is not None:
        scores = scores + mask
    out = scores.softmax(dim=-1) @ split(v)  # [B, h, L, C/h]
    return out_proj(out.permute(2, 0, 1, 3).reshape(length, batch, width))


def naive_block(block, x, mask=None):
    """CLIP's pre-norm residual block: attention then a QuickGELU MLP."""
    heads = block.attn.heads
    h = block.ln_1(x)
    x = x + naive_attention(h, block.attn.in_proj_weight, block.attn.in_proj_bias,
                            block.attn.out_proj, heads, mask)
    h = block.mlp.c_fc(block.ln_2(x))
    return x + block.mlp.c_proj(h * torch.sigmoid(1.702 * h))


@pytest.mark.parametrize('causal', [False, True])
def test_self_attention_equals_torch_multihead_attention(causal):
    torch.manual_seed(0)
    width, heads, length, batch = 32, 4, 7, 3
    attn = randomize_(MultiheadSelfAttention(width, heads, causal=causal))
    reference = nn.MultiheadAttention(width, heads)
    reference.load_state_dict(attn.state_dict())  # same parameter layout and names
    x = torch.randn(length, batch, width)

    out = attn(x)
    mask = causal_mask(length) if causal else None
    expected, _ = reference(x, x, x, attn_mask=mask, need_weights=False)
    assert out.shape == (length, batch, width)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        out, naive_attention(x, attn.in_proj_weight, attn.in_proj_bias, attn.out_proj, heads,
                             mask), rtol=1e-5, atol=1e-5)


def test_causal_attention_ignores_later_tokens():
    torch.manual_seed(0)
    attn = MultiheadSelfAttention(16, 2, causal=True)
    x = torch.randn(6, 2, 16)
    changed = x.clone()
    changed[4:] = torch.randn(2, 2, 16)
    torch.testing.assert_close(attn(x)[:4], attn(changed)[:4])
    assert not torch.allclose(attn(x)[4:], attn(changed)[4:])


def test_self_attention_parameter_names_and_width_check():
    attn = MultiheadSelfAttention(32, 4)
    assert {name: tuple(p.shape) for name, p in attn.state_dict().items()} == {
        'in_proj_weight': (96, 32), 'in_proj_bias': (96,),
        'out_proj.weight': (32, 32), 'out_proj.bias': (32,)}
    with pytest.raises(ValueError, match='30'):
        MultiheadSelfAttention(30, 4)


@pytest.mark.parametrize('causal', [False, True])
def test_residual_block_equals_naive_reference(causal):
    torch.manual_seed(0)
    block = randomize_(ResidualAttentionBlock(32, 4, causal=causal)).eval()
    x = torch.randn(5, 2, 32)
    expected = naive_block(block, x, causal_mask(5) if causal else None)
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
    assert isinstance(block.mlp.gelu, QuickGELU)
    assert sorted(block.state_dict()) == sorted([
        'attn.in_proj_weight', 'attn.in_proj_bias', 'attn.out_proj.weight',
        'attn.out_proj.bias', 'ln_1.weight', 'ln_1.bias', 'mlp.c_fc.weight', 'mlp.c_fc.bias',
        'mlp.c_proj.weight', 'mlp.c_proj.bias', 'ln_2.weight', 'ln_2.bias'])


def test_residual_block_with_drop_path_is_deterministic_in_eval():
    torch.manual_seed(0)
    block = ResidualAttentionBlock(32, 4, drop_path=0.5).eval()
    assert isinstance(block.drop_path, DropPath) and block.drop_path.p == 0.5
    x = torch.randn(5, 2, 32)
    torch.testing.assert_close(block(x), naive_block(block, x), rtol=1e-5, atol=1e-5)


def test_quick_gelu_values():
    x = torch.tensor([-2.0, 0.0, 1.0])
    expected = torch.tensor([-2.0 / (1 + math.exp(3.404)), 0.0, 1.0 / (1 + math.exp(-1.702))])
    torch.testing.assert_close(QuickGELU()(x), expected)


def test_transformer_drop_path_rates_grow_linearly():
    transformer = Transformer(16, 3, 2, drop_path_rate=0.2)
    blocks = transformer.resblocks
    assert len(blocks) == 3
    assert isinstance(blocks[0].drop_path, nn.Identity)  # rate 0 for the first block
    assert blocks[1].drop_path.p == pytest.approx(0.1)
    assert blocks[2].drop_path.p == pytest.approx(0.2)
    assert all(isinstance(block.drop_path, nn.Identity)
               for block in Transformer(16, 2, 2).resblocks)


def test_transformer_equals_stacked_naive_blocks():
    torch.manual_seed(0)
    transformer = randomize_(Transformer(32, 2, 4, causal=True)).eval()
    x = torch.randn(6, 3, 32)
    expected = x
    for block in transformer.resblocks:
        expected = naive_block(block, expected, causal_mask(6))
    torch.testing.assert_close(transformer(x), expected, rtol=1e-5, atol=1e-5)


def test_drop_path_eval_is_identity():
    x = torch.randn(4, 3, 8)
    drop = DropPath(0.5).eval()
    assert torch.equal(drop(x), x)
    assert torch.equal(DropPath(0.0).train()(x), x)


def test_drop_path_train_drops_whole_samples_and_rescales():
    torch.manual_seed(0)
    x = torch.rand(5, 200, 8) + 1.0  # [L, B, C], no zeros of its own
    out = DropPath(0.25).train()(x)
    assert out.shape == x.shape
    dropped = out.eq(0).all(dim=2).all(dim=0)  # per sample (dim 1)
    kept = ~dropped
    torch.testing.assert_close(out[:, kept], x[:, kept] / 0.75)
    assert out[:, dropped].eq(0).all()
    assert 20 < int(dropped.sum()) < 80  # about a quarter of 200 samples


@pytest.mark.parametrize('p', [-0.1, 1.0])
def test_drop_path_rejects_bad_probability(p):
    with pytest.raises(ValueError, match=str(p)):
        DropPath(p)


def test_resize_grid_embedding_golden_values():
    # a 2 x 2 grid [[0, 1], [2, 3]] upsampled to 4 x 4 (align_corners=False): along each axis
    # the samples fall at -0.25, 0.25, 0.75, 1.25 -> weights 0, 0.25, 0.75, 1 after clamping
    embedding = torch.tensor([[7.0], [0.0], [1.0], [2.0], [3.0]])
    out = resize_grid_embedding(embedding, 1, (4, 4))
    axis = torch.tensor([0.0, 0.25, 0.75, 1.0])
    expected_grid = 2 * axis[:, None] + axis[None, :]
    assert out.shape == (17, 1)
    assert out[0].item() == 7.0
    torch.testing.assert_close(out[1:, 0], expected_grid.flatten())


@pytest.mark.parametrize('num_prefix, size', [(1, (3, 5)), (2, (6, 6)), (1, (2, 2))])
def test_resize_grid_embedding_matches_interpolate(num_prefix, size):
    torch.manual_seed(0)
    side, channels = 4, 6
    embedding = torch.randn(num_prefix + side * side, channels)
    out = resize_grid_embedding(embedding, num_prefix, size)
    assert out.shape == (num_prefix + size[0] * size[1], channels)
    assert torch.equal(out[:num_prefix], embedding[:num_prefix])
    grid = embedding[num_prefix:].reshape(side, side, channels).permute(2, 0, 1)[None]
    expected = F.interpolate(grid, size=size, mode='bilinear', align_corners=False)
    torch.testing.assert_close(out[num_prefix:], expected[0].permute(1, 2, 0).reshape(-1, channels))


def test_resize_grid_embedding_same_size_is_identity():
    embedding = torch.randn(1 + 9, 4)
    assert torch.equal(resize_grid_embedding(embedding, 1, (3, 3)), embedding)


def test_resize_grid_embedding_rejects_non_square_grid():
    with pytest.raises(ValueError, match='12'):
        resize_grid_embedding(torch.randn(1 + 12, 4), 1, (4, 4))
