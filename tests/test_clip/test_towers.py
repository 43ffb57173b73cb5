"""CLIP's image and text towers against naive re-implementations of OpenAI's code."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from denseclip.clip import (AttentionPool2d, ModifiedResNet, TextTransformer, VisionTransformer,
                            tokenize)

from .tiny import randomize_


def resized_positions(embedding: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[1 + S*S, C] -> [1 + H*W, C]``: class row kept, grid interpolated bilinearly."""
    side = int((embedding.shape[0] - 1) ** 0.5)
    grid = embedding[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    if (side, side) != (height, width):
        grid = F.interpolate(grid, size=(height, width), mode='bilinear', align_corners=False)
    return torch.cat([embedding[:1], grid.flatten(2)[0].t()])


def openai_attention_pool(pool: AttentionPool2d, x: torch.Tensor):
    """OpenAI's ``AttentionPool2d.forward``, with every token as a query (as DenseCLIP does)."""
    batch, _, height, width = x.shape
    x = x.flatten(2).permute(2, 0, 1)  # NCHW -> (HW)NC
    x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)  # (HW+1)NC
    x = x + resized_positions(pool.positional_embedding, height, width)[:, None, :]
    out, _ = F.multi_head_attention_forward(
        query=x, key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=pool.num_heads,
        q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight,
        v_proj_weight=pool.v_proj.weight, in_proj_weight=None,
        in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
        out_proj_weight=pool.c_proj.weight, out_proj_bias=pool.c_proj.bias,
        use_separate_proj_weight=True, training=False, need_weights=False)
    dense = out[1:].permute(1, 2, 0).reshape(batch, -1, height, width)  # (HW)ND -> NDHW
    return out[0], dense


def functional_bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0,
                        bn.eps)


def naive_resnet_stages(model: ModifiedResNet, x: torch.Tensor) -> list:
    """OpenAI's ModifiedResNet trunk (eval mode) in functional form."""
    x = F.relu(functional_bn(F.conv2d(x, model.conv1.weight, stride=2, padding=1), model.bn1))
    x = F.relu(functional_bn(F.conv2d(x, model.conv2.weight, padding=1), model.bn2))
    x = F.relu(functional_bn(F.conv2d(x, model.conv3.weight, padding=1), model.bn3))
    x = F.avg_pool2d(x, 2)
    features = []
    for stage, stride in ((model.layer1, 1), (model.layer2, 2), (model.layer3, 2),
                          (model.layer4, 2)):
        for index, block in enumerate(stage):
            block_stride = stride if index == 0 else 1
            out = F.relu(functional_bn(F.conv2d(x, block.conv1.weight), block.bn1))
            out = F.relu(functional_bn(F.conv2d(out, block.conv2.weight, padding=1), block.bn2))
            if block_stride > 1:
                out = F.avg_pool2d(out, block_stride)
            out = functional_bn(F.conv2d(out, block.conv3.weight), block.bn3)
            identity = x
            if index == 0:  # every first block changes channels or stride in these tests
                if block_stride > 1:
                    identity = F.avg_pool2d(identity, block_stride)
                conv, bn = block.downsample.get_submodule('0'), block.downsample.get_submodule('1')
                identity = functional_bn(F.conv2d(identity, conv.weight), bn)
            x = F.relu(out + identity)
        features.append(x)
    return features


@pytest.fixture
def tiny_resnet():
    torch.manual_seed(0)
    return randomize_(ModifiedResNet((1, 1, 1, 1), output_dim=16, heads=4, input_resolution=64,
                                     width=8)).eval()


@pytest.mark.parametrize('size', [(2, 2), (2, 3), (4, 4), (3, 1)])
def test_attention_pool_equals_openai_reference(size):
    torch.manual_seed(0)
    pool = randomize_(AttentionPool2d(spacial_dim=2, embed_dim=32, num_heads=4, output_dim=16))
    x = torch.randn(3, 32, *size)
    global_out, dense = pool(x)
    expected_global, expected_dense = openai_attention_pool(pool, x)
    assert global_out.shape == (3, 16)
    assert dense.shape == (3, 16, *size)
    torch.testing.assert_close(global_out, expected_global, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dense, expected_dense, rtol=1e-5, atol=1e-5)


def test_attention_pool_parameters_and_width_check():
    pool = AttentionPool2d(spacial_dim=7, embed_dim=64, num_heads=4, output_dim=16)
    assert {name: tuple(p.shape) for name, p in pool.state_dict().items()} == {
        'positional_embedding': (50, 64),
        'q_proj.weight': (64, 64), 'q_proj.bias': (64,),
        'k_proj.weight': (64, 64), 'k_proj.bias': (64,),
        'v_proj.weight': (64, 64), 'v_proj.bias': (64,),
        'c_proj.weight': (16, 64), 'c_proj.bias': (16,)}
    with pytest.raises(ValueError, match='num_heads 5'):
        AttentionPool2d(spacial_dim=7, embed_dim=64, num_heads=5, output_dim=16)


def test_modified_resnet_stages_equal_naive_reference(tiny_resnet):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    stages = tiny_resnet.forward_stages(x)
    assert [tuple(f.shape) for f in stages] == [
        (2, 32, 16, 16), (2, 64, 8, 8), (2, 128, 4, 4), (2, 256, 2, 2)]
    assert tuple(tiny_resnet.out_channels) == (32, 64, 128, 256)
    for ours, expected in zip(stages, naive_resnet_stages(tiny_resnet, x)):
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_modified_resnet_global_embedding_is_attention_pool_token(tiny_resnet):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    out = tiny_resnet(x)
    expected, _ = openai_attention_pool(tiny_resnet.attnpool, naive_resnet_stages(tiny_resnet,
                                                                                  x)[-1])
    assert out.shape == (2, 16)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_modified_resnet_non_square_input_gives_dense_map(tiny_resnet):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 96)
    c5 = tiny_resnet.forward_stages(x)[-1]
    assert c5.shape == (2, 256, 2, 3)
    global_out, dense = tiny_resnet.attnpool(c5)
    assert global_out.shape == (2, 16)
    assert dense.shape == (2, 16, 64 // 32, 96 // 32)
    expected_global, expected_dense = openai_attention_pool(tiny_resnet.attnpool, c5)
    torch.testing.assert_close(dense, expected_dense, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(tiny_resnet(x), expected_global, rtol=1e-4, atol=1e-5)


def test_modified_resnet_rejects_bad_resolution():
    with pytest.raises(ValueError, match='100'):
        ModifiedResNet((1, 1, 1, 1), output_dim=16, heads=4, input_resolution=100, width=8)


# ----------------------------------------------------------------------------- ViT


def naive_vit(model: VisionTransformer, image: torch.Tensor, heads: int):
    """OpenAI's ``VisionTransformer.forward`` built on ``nn.MultiheadAttention``.

    Returns the projected class token ``[B, D]`` and the final tokens ``[B, 1 + HW, C]``.
    """
    patch = model.conv1.weight.shape[-1]
    x = F.conv2d(image, model.conv1.weight, stride=patch)  # [B, C, h, w]
    batch, width, grid_h, grid_w = x.shape
    x = x.flatten(2).transpose(1, 2)  # [B, HW, C]
    cls = model.class_embedding.expand(batch, 1, width)
    x = torch.cat([cls, x], dim=1) + resized_positions(model.positional_embedding, grid_h, grid_w)
    x = F.layer_norm(x, (width,), model.ln_pre.weight, model.ln_pre.bias).transpose(0, 1)
    for block in model.transformer.resblocks:
        attention = nn.MultiheadAttention(width, heads)
        attention.load_state_dict(block.attn.state_dict())
        h = block.ln_1(x)
        x = x + attention(h, h, h, need_weights=False)[0]
        h = block.mlp.c_fc(block.ln_2(x))
        x = x + block.mlp.c_proj(h * torch.sigmoid(1.702 * h))
    tokens = x.transpose(0, 1)
    return model.ln_post(tokens[:, 0]) @ model.proj, tokens


@pytest.fixture
def tiny_vit():
    torch.manual_seed(0)
    return randomize_(VisionTransformer(input_resolution=64, patch_size=16, width=64, layers=2,
                                        heads=4, output_dim=32)).eval()


@pytest.mark.parametrize('size', [(64, 64), (64, 96), (32, 32)])
def test_vit_equals_naive_reference(tiny_vit, size):
    torch.manual_seed(1)
    image = torch.randn(2, 3, *size)
    expected, expected_tokens = naive_vit(tiny_vit, image, heads=4)
    out = tiny_vit(image)
    assert out.shape == (2, 32)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)

    tokens, grid = tiny_vit.embed(image)
    assert grid == (size[0] // 16, size[1] // 16)
    assert tokens.shape == (1 + grid[0] * grid[1], 2, 64)  # [L, B, C]
    tokens = tiny_vit.transformer(tokens)
    torch.testing.assert_close(tokens.transpose(0, 1), expected_tokens, rtol=1e-4, atol=1e-5)
    dense = tiny_vit.project(tokens[1:])  # every patch token -> embedding space
    assert dense.shape == (grid[0] * grid[1], 2, 32)
    torch.testing.assert_close(dense[:, 0], tiny_vit.ln_post(expected_tokens[0, 1:])
                               @ tiny_vit.proj, rtol=1e-4, atol=1e-5)


def test_vit_parameters_and_resolution_check(tiny_vit):
    shapes = {name: tuple(p.shape) for name, p in tiny_vit.state_dict().items()}
    assert shapes['conv1.weight'] == (64, 3, 16, 16)
    assert 'conv1.bias' not in shapes
    assert shapes['class_embedding'] == (64,)
    assert shapes['positional_embedding'] == (17, 64)
    assert shapes['proj'] == (64, 32)
    assert shapes['transformer.resblocks.1.attn.in_proj_weight'] == (192, 64)
    with pytest.raises(ValueError, match='patch_size 16'):
        VisionTransformer(input_resolution=72, patch_size=16, width=64, layers=1, heads=1,
                          output_dim=32)


# ----------------------------------------------------------------------------- text


def naive_text(model: TextTransformer, text: torch.Tensor, heads: int) -> torch.Tensor:
    """OpenAI's ``encode_text``: causal float mask, ``ln_final``, EOS (argmax) token."""
    length = text.shape[1]
    width = model.token_embedding.weight.shape[1]
    x = (model.token_embedding(text) + model.positional_embedding[:length]).transpose(0, 1)
    mask = torch.full((length, length), float('-inf')).triu(1)
    for block in model.transformer.resblocks:
        attention = nn.MultiheadAttention(width, heads)
        attention.load_state_dict(block.attn.state_dict())
        h = block.ln_1(x)
        x = x + attention(h, h, h, attn_mask=mask, need_weights=False)[0]
        h = block.mlp.c_fc(block.ln_2(x))
        x = x + block.mlp.c_proj(h * torch.sigmoid(1.702 * h))
    x = model.ln_final(x.transpose(0, 1))
    return x[torch.arange(text.shape[0]), text.argmax(dim=-1)] @ model.text_projection


@pytest.fixture
def tiny_text():
    torch.manual_seed(0)
    return randomize_(TextTransformer(context_length=77, vocab_size=49408, width=64, heads=4,
                                      layers=2, embed_dim=32)).eval()


def test_text_equals_naive_reference(tiny_text):
    text = tokenize(['a photo of a cat', 'a dog', 'a diagram of a traffic light'])
    out = tiny_text.encode_text(text)
    assert out.shape == (3, 32)
    torch.testing.assert_close(out, naive_text(tiny_text, text, heads=4), rtol=1e-4, atol=1e-5)


def test_text_takes_the_eos_position(tiny_text):
    text = tokenize(['a photo of a cat', 'a dog'])
    eos = text.argmax(dim=-1)
    assert eos.tolist() == [6, 3]
    # the hidden state at the EOS position, computed without the tower's own pooling
    x = tiny_text.token_embedding(text) + tiny_text.positional_embedding
    x = tiny_text.ln_final(tiny_text.transformer(x.transpose(0, 1)).transpose(0, 1))
    expected = torch.stack([x[0, 6], x[1, 3]]) @ tiny_text.text_projection
    torch.testing.assert_close(tiny_text.encode_text(text), expected, rtol=1e-5, atol=1e-6)
    # the causal mask makes anything after EOS irrelevant, and anything before it relevant
    padded = text.clone()
    padded[:, 10:20] = 1234
    torch.testing.assert_close(tiny_text.encode_text(padded), expected, rtol=1e-5, atol=1e-6)
    changed = text.clone()
    changed[0, 2] = 1234
    assert not torch.allclose(tiny_text.encode_text(changed)[0], expected[0])
    torch.testing.assert_close(tiny_text.encode_text(changed)[1], expected[1])


def test_text_shorter_sequences_use_the_first_positions(tiny_text):
    text = tokenize(['a photo of a cat', 'a dog'])
    short = tiny_text.encode_embeddings(tiny_text.token_embedding(text[:, :13]),
                                        text.argmax(dim=-1))
    torch.testing.assert_close(short, tiny_text.encode_text(text), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='78'):
        tiny_text.encode_embeddings(torch.zeros(1, 78, 64), torch.tensor([3]))


# ------------------------------------------------------------------ MaskCLIP's value path
def test_attention_pool_value_path_is_c_proj_of_v_proj_per_position():
    """``dense='value'``: ``c_proj(v_proj(x_i + pos_i))`` at every position, computed by hand;
    the global embedding is the one of ``dense='attention'`` (OpenAI's)."""
    torch.manual_seed(0)
    attention = randomize_(AttentionPool2d(spacial_dim=2, embed_dim=32, num_heads=4,
                                           output_dim=16))
    value = AttentionPool2d(spacial_dim=2, embed_dim=32, num_heads=4, output_dim=16,
                            dense='value')
    value.load_state_dict(attention.state_dict())  # same parameter names
    x = torch.randn(3, 32, 2, 3)
    global_out, dense = value(x)
    tokens = x.flatten(2).transpose(1, 2)  # [B, HW, C]
    tokens = tokens + resized_positions(value.positional_embedding, 2, 3)[1:]
    by_hand = F.linear(F.linear(tokens, value.v_proj.weight, value.v_proj.bias),
                       value.c_proj.weight, value.c_proj.bias)  # [B, HW, D]
    assert dense.shape == (3, 16, 2, 3)
    torch.testing.assert_close(dense, by_hand.transpose(1, 2).reshape(3, 16, 2, 3),
                               rtol=1e-5, atol=1e-5)
    expected_global, attention_dense = openai_attention_pool(attention, x)
    torch.testing.assert_close(global_out, expected_global, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(dense, attention_dense, atol=1e-2)
    # no mixing between positions: changing one feature vector changes only its own embedding
    changed = x.clone()
    changed[:, :, 0, 0] += 1.0
    moved = (value(changed)[1] - dense).abs().amax(dim=(0, 1))  # [H, W]
    assert moved[0, 0] > 1e-3 and moved.flatten()[1:].max() < 1e-6


def test_attention_pool_rejects_an_unknown_dense_embedding():
    with pytest.raises(ValueError, match=r"dense must be one of \('attention', 'value'\), "
                                         r"got 'values'"):
        AttentionPool2d(spacial_dim=2, embed_dim=32, num_heads=4, output_dim=16, dense='values')
    tower = ModifiedResNet((1, 1, 1, 1), output_dim=16, heads=4, input_resolution=64, width=8,
                           dense='value')
    assert tower.attnpool.dense == 'value' and "dense='value'" in repr(tower.attnpool)


def test_vit_value_path_of_a_block_by_hand():
    """``value_path``: the block with its attention reduced to ``out_proj(v_proj(ln_1(x)))``."""
    from denseclip.clip.layers import ResidualAttentionBlock
    from denseclip.clip.vit import value_path

    torch.manual_seed(0)
    block = randomize_(ResidualAttentionBlock(16, 2)).eval()
    x = torch.randn(5, 2, 16)  # [L, B, C]
    y = F.layer_norm(x, (16,), block.ln_1.weight, block.ln_1.bias)
    y = F.linear(y, block.attn.in_proj_weight[32:], block.attn.in_proj_bias[32:])  # values
    x_mid = x + F.linear(y, block.attn.out_proj.weight, block.attn.out_proj.bias)
    h = F.linear(F.layer_norm(x_mid, (16,), block.ln_2.weight, block.ln_2.bias),
                 block.mlp.c_fc.weight, block.mlp.c_fc.bias)
    h = h * torch.sigmoid(1.702 * h)  # QuickGELU
    expected = x_mid + F.linear(h, block.mlp.c_proj.weight, block.mlp.c_proj.bias)
    torch.testing.assert_close(value_path(block, x), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(value_path(block, x), block(x), atol=1e-3)
    # each token on its own: the path of a subsequence is the subsequence of the path
    torch.testing.assert_close(value_path(block, x[2:3]), expected[2:3], rtol=1e-5, atol=1e-5)
