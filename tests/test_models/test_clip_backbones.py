"""Tests of the CLIP backbones: CLIPResNet, CLIPResNetWithAttention, CLIPVisionTransformer and
BackboneWithAttentionPool.

Values are checked against naive functional re-computations that read the weights by their
OpenAI key names (``conv1.weight``, ``attnpool.q_proj.weight``, ``ln_1.weight`` ...), so they
are independent of how the modules are put together.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from denseclip.clip import CheckpointError
from denseclip.clip.vit import VisionTransformer
from denseclip.models import (BackboneWithAttentionPool, CLIPResNet, CLIPResNetWithAttention,
                              CLIPVisionTransformer)

BATCH, HEIGHT, WIDTH = 2, 64, 96  # non-square: a 2 x 3 grid at stride 32
ATOL = 1e-5


def _image(seed: int = 0) -> torch.Tensor:
    return torch.randn(BATCH, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ naive references
def _resize_grid(embedding: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[1 + S*S, C]`` -> ``[1 + h*w, C]``: first row kept, grid resized bilinearly."""
    side = int(round((embedding.shape[0] - 1) ** 0.5))
    grid = embedding[1:].reshape(side, side, -1).permute(2, 0, 1)[None]  # [1, C, S, S]
    grid = F.interpolate(grid, size=size, mode='bilinear', align_corners=False)
    return torch.cat([embedding[:1], grid[0].flatten(1).t()])


def _bn(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    return F.batch_norm(x, sd[f'{prefix}.running_mean'], sd[f'{prefix}.running_var'],
                        sd[f'{prefix}.weight'], sd[f'{prefix}.bias'], False, 0.0, 1e-5)


def _naive_resnet_stages(sd: dict, x: torch.Tensor, layers: int = 4) -> list[torch.Tensor]:
    """CLIP's anti-aliased ResNet (one bottleneck per stage), eval mode, from key names."""
    x = F.relu(_bn(F.conv2d(x, sd['conv1.weight'], stride=2, padding=1), sd, 'bn1'))
    x = F.relu(_bn(F.conv2d(x, sd['conv2.weight'], padding=1), sd, 'bn2'))
    x = F.relu(_bn(F.conv2d(x, sd['conv3.weight'], padding=1), sd, 'bn3'))
    x = F.avg_pool2d(x, 2)
    stages = []
    for stage in range(1, layers + 1):
        p = f'layer{stage}.0'
        stride = 1 if stage == 1 else 2
        out = F.relu(_bn(F.conv2d(x, sd[f'{p}.conv1.weight']), sd, f'{p}.bn1'))
        out = F.relu(_bn(F.conv2d(out, sd[f'{p}.conv2.weight'], padding=1), sd, f'{p}.bn2'))
        out = F.avg_pool2d(out, stride) if stride > 1 else out
        out = _bn(F.conv2d(out, sd[f'{p}.conv3.weight']), sd, f'{p}.bn3')
        shortcut = F.avg_pool2d(x, stride) if stride > 1 else x
        shortcut = _bn(F.conv2d(shortcut, sd[f'{p}.downsample.0.weight']), sd,
                       f'{p}.downsample.1')
        x = F.relu(out + shortcut)
        stages.append(x)
    return stages


def _naive_attnpool(sd: dict, x: torch.Tensor, num_heads: int,
                    prefix: str = 'attnpool') -> tuple[torch.Tensor, torch.Tensor]:
    """OpenAI's attention pool, with every token as a query (the released DenseCLIP)."""
    batch, channels, height, width = x.shape
    tokens = x.flatten(2).permute(2, 0, 1)  # [HW, B, C]
    tokens = torch.cat([tokens.mean(dim=0, keepdim=True), tokens])
    tokens = tokens + _resize_grid(sd[f'{prefix}.positional_embedding'], (height, width))[:, None]
    out, _ = F.multi_head_attention_forward(
        query=tokens, key=tokens, value=tokens, embed_dim_to_check=channels,
        num_heads=num_heads, q_proj_weight=sd[f'{prefix}.q_proj.weight'],
        k_proj_weight=sd[f'{prefix}.k_proj.weight'], v_proj_weight=sd[f'{prefix}.v_proj.weight'],
        in_proj_weight=None, in_proj_bias=torch.cat([sd[f'{prefix}.{name}_proj.bias']
                                                     for name in 'qkv']),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
        out_proj_weight=sd[f'{prefix}.c_proj.weight'], out_proj_bias=sd[f'{prefix}.c_proj.bias'],
        use_separate_proj_weight=True, training=False, need_weights=False)
    return out[0], out[1:].permute(1, 2, 0).reshape(batch, -1, height, width)


def _naive_block(sd: dict, prefix: str, x: torch.Tensor, heads: int) -> torch.Tensor:
    """CLIP's residual attention block on ``[L, B, C]`` (no mask, no drop path)."""
    width = x.shape[-1]
    y = F.layer_norm(x, (width,), sd[f'{prefix}.ln_1.weight'], sd[f'{prefix}.ln_1.bias'])
    y, _ = F.multi_head_attention_forward(
        y, y, y, width, heads, sd[f'{prefix}.attn.in_proj_weight'],
        sd[f'{prefix}.attn.in_proj_bias'], None, None, False, 0.0,
        sd[f'{prefix}.attn.out_proj.weight'], sd[f'{prefix}.attn.out_proj.bias'],
        training=False, need_weights=False)
    x = x + y
    y = F.layer_norm(x, (width,), sd[f'{prefix}.ln_2.weight'], sd[f'{prefix}.ln_2.bias'])
    y = F.linear(y, sd[f'{prefix}.mlp.c_fc.weight'], sd[f'{prefix}.mlp.c_fc.bias'])
    y = y * torch.sigmoid(1.702 * y)
    return x + F.linear(y, sd[f'{prefix}.mlp.c_proj.weight'], sd[f'{prefix}.mlp.c_proj.bias'])


def _naive_vit_tokens(sd: dict, x: torch.Tensor, heads: int, layers: int,
                      class_twice: bool) -> tuple[list[torch.Tensor], tuple[int, int]]:
    """Token sequences ``[1 + HW, B, C]`` after every block of CLIP's ViT."""
    patch = sd['conv1.weight'].shape[-1]
    x = F.conv2d(x, sd['conv1.weight'], stride=patch)
    batch, width, height, grid_w = x.shape
    tokens = torch.cat([sd['class_embedding'].expand(batch, 1, -1),
                        x.flatten(2).transpose(1, 2)], dim=1)
    position = _resize_grid(sd['positional_embedding'], (height, grid_w)).clone()
    if class_twice:
        position[0] += sd['class_embedding']
    tokens = F.layer_norm(tokens + position, (width,), sd['ln_pre.weight'], sd['ln_pre.bias'])
    tokens = tokens.transpose(0, 1)
    outputs = []
    for index in range(layers):
        tokens = _naive_block(sd, f'transformer.resblocks.{index}', tokens, heads)
        outputs.append(tokens)
    return outputs, (height, grid_w)


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = ATOL) -> None:
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=atol, rtol=1e-4)


# ------------------------------------------------------------------ CLIP ResNet
def _tiny_resnet(randomize=None, input_resolution: int = 64) -> CLIPResNetWithAttention:
    torch.manual_seed(0)
    model = CLIPResNetWithAttention(layers=(1, 1, 1, 1), width=8, output_dim=32,
                                    input_resolution=input_resolution)
    if randomize is not None:
        randomize(model)
    return model.eval()


def test_clip_resnet_pyramid_shapes_and_values(randomize):
    model = MODELS.build(dict(type='CLIPResNet', layers=(1, 1, 1, 1), width=8))
    assert isinstance(model, CLIPResNet)
    randomize(model).eval()
    assert not any(key.startswith('attnpool') for key in model.state_dict())
    x = _image()
    with torch.no_grad():
        outputs = model(x)
    assert isinstance(outputs, tuple) and len(outputs) == 4
    for level, feature in enumerate(outputs):
        stride = 4 * 2 ** level
        assert feature.shape == (BATCH, 8 * 4 * 2 ** level, HEIGHT // stride, WIDTH // stride)
    expected = _naive_resnet_stages(model.state_dict(), x)
    for actual, reference in zip(outputs, expected):
        _assert_close(actual, reference)


def test_clip_resnet_with_attention_outputs_match_naive_pool(randomize):
    model = _tiny_resnet(randomize=randomize, input_resolution=128)
    assert model.attnpool.num_heads == 4  # CLIP's width * 32 / 64
    x = _image()
    with torch.no_grad():
        outputs = model(x)
    assert len(outputs) == 5
    *maps, (global_embedding, dense) = outputs
    assert [m.shape[1] for m in maps] == [32, 64, 128, 256]
    assert global_embedding.shape == (BATCH, 32)
    assert dense.shape == (BATCH, 32, HEIGHT // 32, WIDTH // 32)
    sd = model.state_dict()
    stages = _naive_resnet_stages(sd, x)
    for actual, reference in zip(maps, stages):
        _assert_close(actual, reference)
    # the stored 4 x 4 grid is resized to the 2 x 3 feature map at run time
    assert model.attnpool.positional_embedding.shape == (17, 256)
    naive_global, naive_dense = _naive_attnpool(sd, stages[-1], num_heads=4)
    _assert_close(global_embedding, naive_global)
    _assert_close(dense, naive_dense)


def test_global_embedding_is_clip_image_embedding(make_clip):
    clip = make_clip('resnet')
    model = _tiny_resnet()
    model.load_state_dict(clip.visual.state_dict())
    x = _image(1)
    with torch.no_grad():
        global_embedding = model(x)[-1][0]
        square = model(x[..., :64])[-1][0]
        _assert_close(global_embedding, clip.encode_image(x))
        _assert_close(square, clip.encode_image(x[..., :64]))
        # OpenAI's pool: only the first token is a query
        stages = _naive_resnet_stages(clip.visual.state_dict(), x[..., :64])
        naive_global, _ = _naive_attnpool(clip.visual.state_dict(), stages[-1], num_heads=4)
    _assert_close(square, naive_global)


def test_dense_tokens_of_a_square_input_use_the_stored_grid(randomize):
    model = _tiny_resnet(randomize=randomize)
    x = _image(2)[..., :64]  # 2 x 2 grid: no resizing at all
    sd = model.state_dict()
    with torch.no_grad():
        _, dense = model(x)[-1]
        c5 = _naive_resnet_stages(sd, x)[-1]
    tokens = c5.flatten(2).permute(2, 0, 1)
    tokens = torch.cat([tokens.mean(0, keepdim=True), tokens])
    tokens = tokens + sd['attnpool.positional_embedding'][:, None]
    # one position by hand: query 3 attends to all 5 tokens, per head
    q = F.linear(tokens, sd['attnpool.q_proj.weight'], sd['attnpool.q_proj.bias'])
    k = F.linear(tokens, sd['attnpool.k_proj.weight'], sd['attnpool.k_proj.bias'])
    v = F.linear(tokens, sd['attnpool.v_proj.weight'], sd['attnpool.v_proj.bias'])
    heads, head_dim = 4, 64
    out = []
    for head in range(heads):
        part = slice(head * head_dim, (head + 1) * head_dim)
        weights = torch.softmax(
            torch.einsum('bc,lbc->bl', q[3, :, part], k[:, :, part]) / head_dim ** 0.5, dim=-1)
        out.append(torch.einsum('bl,lbc->bc', weights, v[:, :, part]))
    token = F.linear(torch.cat(out, dim=-1), sd['attnpool.c_proj.weight'],
                     sd['attnpool.c_proj.bias'])
    # token index 3 is spatial position 2 = row 1, column 0 of the 2 x 2 grid
    _assert_close(dense[:, :, 1, 0], token)


def test_resnet_with_attention_init_weights_loads_and_resizes(make_clip, save_clip):
    clip = make_clip('resnet')
    path = save_clip(clip)
    model = MODELS.build(dict(type='CLIPResNetWithAttention', layers=(1, 1, 1, 1), width=8,
                              output_dim=32, input_resolution=128, pretrained=path))
    assert model.attnpool.positional_embedding.shape == (17, 256)  # 1 + (128 / 32) ** 2
    model.init_weights()
    visual = clip.visual.state_dict()
    loaded = model.state_dict()
    assert set(loaded) == set(visual)
    for key, value in visual.items():
        if key != 'attnpool.positional_embedding':
            assert torch.equal(loaded[key], value), key
    position = loaded['attnpool.positional_embedding']
    assert torch.equal(position[0], visual['attnpool.positional_embedding'][0])  # global row
    _assert_close(position, _resize_grid(visual['attnpool.positional_embedding'], (4, 4)))


def test_clip_resnet_init_weights_ignores_the_attention_pool(make_clip, save_clip):
    clip = make_clip('resnet')
    model = CLIPResNet(layers=(1, 1, 1, 1), width=8, pretrained=save_clip(clip))
    model.init_weights()
    visual = clip.visual.state_dict()
    loaded = model.state_dict()
    assert set(loaded) == {key for key in visual if not key.startswith('attnpool.')}
    for key, value in loaded.items():
        assert torch.equal(value, visual[key]), key


def test_resnet_init_weights_rejects_a_vit_checkpoint(make_clip, save_clip):
    model = CLIPResNet(layers=(1, 1, 1, 1), width=8, pretrained=save_clip(make_clip('vit')))
    with pytest.raises(CheckpointError):
        model.init_weights()


# ------------------------------------------------------------------ CLIP ViT
def _tiny_vit(patch_size: int = 16, randomize=None, heads: int = 2,
              **kwargs) -> CLIPVisionTransformer:
    torch.manual_seed(0)
    kwargs.setdefault('get_embeddings', True)
    model = CLIPVisionTransformer(input_resolution=64, patch_size=patch_size, width=64, layers=4,
                                  heads=heads, output_dim=32, out_indices=(0, 1, 2, 3), **kwargs)
    if randomize is not None:
        randomize(model)
    return model.eval()


@pytest.mark.parametrize('patch_size', [16, 8])
def test_vit_pyramid_strides_and_values(patch_size, randomize):
    model = _tiny_vit(patch_size, randomize=randomize)
    x = _image()
    with torch.no_grad():
        *maps, (global_embedding, dense) = model(x)
    assert len(maps) == 4
    for level, feature in enumerate(maps):
        stride = 4 * 2 ** level
        assert feature.shape == (BATCH, 64, HEIGHT // stride, WIDTH // stride)
    grid = (HEIGHT // patch_size, WIDTH // patch_size)
    assert global_embedding.shape == (BATCH, 32)
    assert dense.shape == (BATCH, 32, *grid)

    sd = model.state_dict()
    tokens, size = _naive_vit_tokens(sd, x, heads=2, layers=4, class_twice=True)
    assert size == grid
    for level, (feature, block_tokens) in enumerate(zip(maps, tokens)):
        token_map = block_tokens[1:].permute(1, 2, 0).reshape(BATCH, 64, *grid)
        with torch.no_grad():
            expected = getattr(model, f'fpn{level + 1}')(token_map)
        _assert_close(feature, expected, atol=1e-4)
    embedded = F.layer_norm(tokens[-1], (64,), sd['ln_post.weight'], sd['ln_post.bias'])
    embedded = embedded @ sd['proj']  # [1 + HW, B, D]
    _assert_close(global_embedding, embedded[0], atol=1e-4)
    _assert_close(dense, embedded[1:].permute(1, 2, 0).reshape(BATCH, 32, *grid), atol=1e-4)


def test_vit_levels_three_and_four_by_hand(randomize):
    model = _tiny_vit(randomize=randomize)
    x = _image()
    with torch.no_grad():
        maps = model(x)
    tokens, grid = _naive_vit_tokens(model.state_dict(), x, heads=2, layers=4, class_twice=True)
    token_map = tokens[2][1:].permute(1, 2, 0).reshape(BATCH, 64, *grid)
    sd = model.state_dict()
    expected = F.group_norm(token_map, 1, sd['fpn3.weight'], sd['fpn3.bias'])
    _assert_close(maps[2], expected, atol=1e-4)
    token_map = tokens[3][1:].permute(1, 2, 0).reshape(BATCH, 64, *grid)
    expected = F.max_pool2d(F.group_norm(token_map, 1, sd['fpn4.0.weight'], sd['fpn4.0.bias']), 2)
    _assert_close(maps[3], expected, atol=1e-4)


@pytest.mark.parametrize('patch_size', [16, 8])
def test_vit_pads_an_input_off_the_patch_grid_and_crops_back(patch_size, randomize):
    """A 36 x 44 input is not cut to the patch grid: its last rows and columns count."""
    model = _tiny_vit(patch_size, randomize=randomize)
    torch.manual_seed(1)
    x = torch.randn(1, 3, 36, 44)
    with torch.no_grad():
        *maps, (_, dense) = model(x)
        padded = model(F.pad(x, (0, -44 % patch_size, 0, -36 % patch_size)))
        changed = x.clone()
        changed[..., -4:, :] = 0
        changed[..., :, -4:] = 0
        *changed_maps, _ = model(changed)
    for stride, feature, full in zip((4, 8, 16, 32), maps, padded):
        expected = (math.ceil(36 / stride), math.ceil(44 / stride))
        assert feature.shape[-2:] == tuple(map(min, expected, full.shape[-2:]))
        # the levels are the zero-padded input's, cropped to the unpadded input's grid
        _assert_close(feature, full[..., :feature.shape[-2], :feature.shape[-1]])
    assert dense.shape[-2:] == (math.ceil(36 / patch_size), math.ceil(44 / patch_size))
    # levels 1-3 see the last 4 rows and columns (the patch conv alone would drop them); level 4
    # max-pools the grid with floor rounding, as in the released models
    for feature, changed_feature in zip(maps[:3], changed_maps):
        assert not torch.allclose(feature[..., -1, :], changed_feature[..., -1, :])
        assert not torch.allclose(feature[..., :, -1], changed_feature[..., :, -1])


def test_vit_class_position_carries_class_embedding_twice(randomize):
    model = _tiny_vit(randomize=randomize)
    for size in [(4, 4), (4, 6)]:
        plain = VisionTransformer.position_embedding(model, *size)
        own = model.position_embedding(*size)
        assert own.shape == (1 + size[0] * size[1], 64)
        assert torch.equal(own[0], plain[0] + model.class_embedding)
        assert torch.equal(own[1:], plain[1:])
        _assert_close(plain, _resize_grid(model.positional_embedding, size))


def test_vit_embeddings_differ_from_clip_tower_only_by_class_position(make_clip):
    """The backbone is CLIP's tower whose class position also holds ``class_embedding``."""
    clip = make_clip('vit')
    model = _tiny_vit(heads=1)  # CLIP's tower has width / 64 heads
    missing, unexpected = model.load_state_dict(clip.visual.state_dict(), strict=False)
    assert all(key.startswith('fpn') for key in missing) and not unexpected
    x = _image(3)
    with torch.no_grad():
        global_embedding, dense = model(x)[-1]
        assert not torch.allclose(global_embedding, clip.encode_image(x), atol=1e-3)
        clip.visual.positional_embedding[0] += clip.visual.class_embedding
        _assert_close(global_embedding, clip.encode_image(x), atol=1e-4)
        tokens, grid = clip.visual.embed(x)
        projected = clip.visual.project(clip.visual.transformer(tokens))  # [L, B, D]
    _assert_close(dense, projected[1:].permute(1, 2, 0).reshape(BATCH, 32, *grid), atol=1e-4)


def test_vit_without_embeddings_returns_only_the_pyramid():
    model = _tiny_vit(get_embeddings=False)
    with torch.no_grad():
        outputs = model(_image())
    assert len(outputs) == 4 and all(isinstance(o, torch.Tensor) for o in outputs)


def test_vit_drop_path_only_in_training():
    torch.manual_seed(0)
    plain = _tiny_vit()
    dropping = _tiny_vit(drop_path_rate=0.5)
    dropping.load_state_dict(plain.state_dict())
    blocks = dropping.transformer.resblocks
    assert isinstance(blocks[0].drop_path, torch.nn.Identity)  # rate rises linearly from 0
    assert blocks[-1].drop_path.p == pytest.approx(0.5)
    assert blocks[1].drop_path.p == pytest.approx(0.5 / 3)
    x = _image()
    with torch.no_grad():
        reference = plain(x)[-1][1]
        _assert_close(dropping(x)[-1][1], reference)  # eval: no drop path
        dropping.train()
        plain.train()
        torch.manual_seed(1)
        first = dropping(x)[-1][1]
        torch.manual_seed(2)
        second = dropping(x)[-1][1]
        no_drop = plain(x)[-1][1]
    assert not torch.allclose(first, second)
    _assert_close(no_drop, reference)  # train mode alone changes nothing but drop path


def test_vit_pyramid_key_names():
    model = _tiny_vit()
    fpn_keys = {key for key in model.state_dict() if key.startswith('fpn')}
    prefixes = {key.rsplit('.', 1)[0] for key in fpn_keys}
    assert prefixes == {'fpn1.0', 'fpn1.1', 'fpn1.2', 'fpn1.4', 'fpn2.0', 'fpn2.1', 'fpn3',
                        'fpn4.0'}
    assert isinstance(model.fpn1[0], torch.nn.GroupNorm) and model.fpn1[0].num_groups == 1
    assert isinstance(model.fpn1[1], torch.nn.ConvTranspose2d)
    assert isinstance(model.fpn1[2], torch.nn.modules.batchnorm._BatchNorm)
    assert isinstance(model.fpn1[3], torch.nn.GELU)
    assert isinstance(model.fpn3, torch.nn.GroupNorm)
    assert isinstance(model.fpn4[1], torch.nn.MaxPool2d)
    assert 'fpn1.2.running_mean' in fpn_keys and 'fpn1.2.num_batches_tracked' in fpn_keys
    assert not model.conv1.bias


@pytest.mark.parametrize('out_indices', [(0, 1, 2), (0, 1, 2, 4), (-1, 0, 1, 2),
                                         (0, 1, 2, 3, 3), (0, 1, 1, 1)])
def test_vit_rejects_bad_out_indices(out_indices):
    with pytest.raises(ValueError, match='out_indices'):
        CLIPVisionTransformer(input_resolution=64, patch_size=16, width=64, layers=4, heads=2,
                              output_dim=32, out_indices=out_indices)


@pytest.mark.parametrize('input_resolution, patch_size', [(64, 32), (64, 4), (60, 16)])
def test_vit_rejects_bad_patch_sizes(input_resolution, patch_size):
    with pytest.raises(ValueError, match='patch_size'):
        CLIPVisionTransformer(input_resolution=input_resolution, patch_size=patch_size,
                              width=64, layers=4, heads=2, output_dim=32,
                              out_indices=(0, 1, 2, 3))


def test_vit_without_embeddings_has_no_unused_parameters(make_clip, save_clip):
    clip = make_clip('vit')
    model = CLIPVisionTransformer(input_resolution=128, patch_size=16, width=64, layers=4,
                                  heads=2, output_dim=32, out_indices=(0, 1, 2, 3),
                                  pretrained=save_clip(clip))
    keys = set(model.state_dict())
    assert not any(key.startswith(('ln_post', 'proj')) for key in keys)
    model.init_weights()  # the checkpoint's ln_post / proj are ignored, the rest loads
    assert torch.equal(model.conv1.weight, clip.visual.conv1.weight)
    sum(level.sum() for level in model(torch.randn(2, 3, 64, 64))).backward()
    assert all(param.grad is not None for param in model.parameters())


def test_vit_init_weights_loads_and_resizes(make_clip, save_clip):
    clip = make_clip('vit')
    model = CLIPVisionTransformer(input_resolution=128, patch_size=16, width=64, layers=4,
                                  heads=2, output_dim=32, out_indices=(0, 1, 2, 3),
                                  get_embeddings=True, pretrained=save_clip(clip))
    fpn_before = {key: value.clone() for key, value in model.state_dict().items()
                  if key.startswith('fpn')}
    model.init_weights()
    visual = clip.visual.state_dict()
    loaded = model.state_dict()
    assert set(loaded) == set(visual) | set(fpn_before)
    for key, value in visual.items():
        if key != 'positional_embedding':
            assert torch.equal(loaded[key], value), key
    for key, value in fpn_before.items():
        assert torch.equal(loaded[key], value), key  # new layers keep their initialisation
    assert loaded['positional_embedding'].shape == (65, 64)  # 1 + (128 / 16) ** 2
    _assert_close(loaded['positional_embedding'],
                  _resize_grid(visual['positional_embedding'], (8, 8)))


# ------------------------------------------------------------------ any backbone
@pytest.mark.parametrize('resnet', ['ResNet', 'ResNetV1c'])
def test_backbone_with_attention_pool(resnet, randomize):
    wrapper = MODELS.build(dict(
        type='BackboneWithAttentionPool',
        backbone=dict(type=resnet, depth=18, stem_channels=16, base_channels=8),
        in_channels=64, output_dim=32, num_heads=2, spacial_dim=2))
    assert isinstance(wrapper, BackboneWithAttentionPool)
    assert wrapper.embed_dim == 32  # read by DenseCLIP
    assert wrapper.attnpool.positional_embedding.shape == (5, 64)
    randomize(wrapper).eval()
    x = _image()
    with torch.no_grad():
        *maps, (global_embedding, dense) = wrapper(x)
        expected_maps = wrapper.backbone(x)
    assert len(maps) == 4
    for level, (feature, expected) in enumerate(zip(maps, expected_maps)):
        stride = 4 * 2 ** level
        assert feature.shape == (BATCH, 8 * 2 ** level, HEIGHT // stride, WIDTH // stride)
        assert torch.equal(feature, expected)
    assert global_embedding.shape == (BATCH, 32) and dense.shape == (BATCH, 32, 2, 3)
    naive_global, naive_dense = _naive_attnpool(wrapper.state_dict(), maps[-1], num_heads=2)
    _assert_close(global_embedding, naive_global)
    _assert_close(dense, naive_dense)


def test_backbone_with_attention_pool_checks_channels():
    wrapper = BackboneWithAttentionPool(
        backbone=dict(type='ResNet', depth=18, stem_channels=16, base_channels=8),
        in_channels=128, output_dim=32, num_heads=2, spacial_dim=2)
    with pytest.raises(ValueError, match='128'):
        wrapper(_image())


# ------------------------------------------------------------------ what DenseCLIP reads
def test_embed_dim_is_the_width_of_the_returned_embeddings():
    """``embed_dim``: the width of the ``(global, dense)`` pair, None where none is returned."""
    x = _image()
    with torch.no_grad():
        for model in (_tiny_resnet(), _tiny_vit()):
            global_embedding, dense = model(x)[-1]
            assert model.embed_dim == global_embedding.shape[1] == dense.shape[1] == 32
        vit = _tiny_vit(get_embeddings=False)
        assert vit.embed_dim is None and len(vit(x)) == 4
    assert not hasattr(MODELS.build(dict(type='CLIPResNet', layers=(1, 1, 1, 1), width=8)),
                       'embed_dim')


def test_clip_image_towers_say_so():
    """``clip_image_tower``: the backbone takes a CLIP checkpoint (DenseCLIP's pretrained)."""
    assert CLIPResNet.clip_image_tower and CLIPResNetWithAttention.clip_image_tower
    assert CLIPVisionTransformer.clip_image_tower
    assert not hasattr(BackboneWithAttentionPool, 'clip_image_tower')


# ------------------------------------------------------------------ MaskCLIP's dense embeddings
def _naive_value_path(sd: dict, x: torch.Tensor, prefix: str = 'attnpool') -> torch.Tensor:
    """MaskCLIP's ResNet dense embeddings: ``c_proj(v_proj(x + pos))`` per position."""
    batch, _, height, width = x.shape
    tokens = x.flatten(2).transpose(1, 2)  # [B, HW, C]
    tokens = tokens + _resize_grid(sd[f'{prefix}.positional_embedding'], (height, width))[1:]
    values = F.linear(tokens, sd[f'{prefix}.v_proj.weight'], sd[f'{prefix}.v_proj.bias'])
    dense = F.linear(values, sd[f'{prefix}.c_proj.weight'], sd[f'{prefix}.c_proj.bias'])
    return dense.transpose(1, 2).reshape(batch, -1, height, width)


def _naive_value_block(sd: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    """MaskCLIP's last ViT block on ``[L, B, C]``: attention reduced to each token's value."""
    width = x.shape[-1]
    y = F.layer_norm(x, (width,), sd[f'{prefix}.ln_1.weight'], sd[f'{prefix}.ln_1.bias'])
    y = F.linear(y, sd[f'{prefix}.attn.in_proj_weight'][2 * width:],
                 sd[f'{prefix}.attn.in_proj_bias'][2 * width:])
    x = x + F.linear(y, sd[f'{prefix}.attn.out_proj.weight'], sd[f'{prefix}.attn.out_proj.bias'])
    y = F.layer_norm(x, (width,), sd[f'{prefix}.ln_2.weight'], sd[f'{prefix}.ln_2.bias'])
    y = F.linear(y, sd[f'{prefix}.mlp.c_fc.weight'], sd[f'{prefix}.mlp.c_fc.bias'])
    y = y * torch.sigmoid(1.702 * y)
    return x + F.linear(y, sd[f'{prefix}.mlp.c_proj.weight'], sd[f'{prefix}.mlp.c_proj.bias'])


def test_resnet_value_dense_embedding_by_hand(randomize):
    attention = _tiny_resnet(randomize=randomize, input_resolution=128)
    value = MODELS.build(dict(type='CLIPResNetWithAttention', layers=(1, 1, 1, 1), width=8,
                              output_dim=32, input_resolution=128, dense_embedding='value'))
    assert list(value.state_dict()) == list(attention.state_dict())  # the same keys
    value.load_state_dict(attention.state_dict())
    x = _image(5)
    with torch.no_grad():
        *maps, (global_embedding, dense) = value.eval()(x)
        *attention_maps, (attention_global, attention_dense) = attention(x)
    sd = value.state_dict()
    stages = _naive_resnet_stages(sd, x)
    _assert_close(dense, _naive_value_path(sd, stages[-1]))
    # the global embedding and the feature maps do not depend on the dense embedding
    _assert_close(global_embedding, _naive_attnpool(sd, stages[-1], num_heads=4)[0])
    _assert_close(global_embedding, attention_global)
    for actual, reference in zip(maps, attention_maps):
        assert torch.equal(actual, reference)
    assert not torch.allclose(dense, attention_dense, atol=1e-3)


def test_vit_value_dense_embedding_by_hand(randomize):
    value = _tiny_vit(randomize=randomize, dense_embedding='value')
    attention = _tiny_vit()
    attention.load_state_dict(value.state_dict())  # the same keys
    x = _image(6)
    with torch.no_grad():
        *levels, (global_embedding, dense) = value(x)
        *attention_levels, (attention_global, attention_dense) = attention(x)
    sd = value.state_dict()
    tokens, grid = _naive_vit_tokens(sd, x, heads=2, layers=4, class_twice=True)
    last = _naive_value_block(sd, 'transformer.resblocks.3', tokens[-2])  # [1 + HW, B, C]
    projected = F.layer_norm(last[1:], (64,), sd['ln_post.weight'], sd['ln_post.bias'])
    projected = projected @ sd['proj']  # [HW, B, D]
    _assert_close(dense, projected.permute(1, 2, 0).reshape(BATCH, 32, *grid), atol=1e-4)
    _assert_close(global_embedding, attention_global)
    for actual, reference in zip(levels, attention_levels):
        assert torch.equal(actual, reference)
    assert not torch.allclose(dense, attention_dense, atol=1e-3)


@pytest.mark.parametrize('backbone, match', [
    (dict(type='CLIPResNetWithAttention', layers=(1, 1, 1, 1), width=8, output_dim=32,
          input_resolution=64, dense_embedding='values'),
     r"model.backbone.dense_embedding='values': expected one of \('attention', 'value'\)"),
    (dict(type='CLIPVisionTransformer', input_resolution=64, width=64, layers=4, heads=2,
          output_dim=32, out_indices=(0, 1, 2, 3), get_embeddings=True, dense_embedding='tokens'),
     r"model.backbone.dense_embedding='tokens': expected one of \('attention', 'value'\)"),
    (dict(type='CLIPVisionTransformer', input_resolution=64, width=64, layers=4, heads=2,
          output_dim=32, out_indices=(0, 1, 2, 3), dense_embedding='value'),
     r"model.backbone.dense_embedding='value' needs get_embeddings=True"),
])
def test_dense_embedding_is_checked(backbone, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(backbone)
