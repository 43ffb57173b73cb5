"""Reading and loading CLIP weights: every supported format round-trips, bad files are refused."""
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu
from torch import nn

from denseclip.clip import (CLIP, CheckpointError, ModifiedResNet, TextTransformer,
                            VisionTransformer, build_model, infer_clip_config, load,
                            read_clip_weights, read_state_dict, tokenize)
from denseclip.clip.checkpoint import (load_into, load_tower, resize_grid_positions,
                                       text_state_dict, truncate_text_positions,
                                       visual_state_dict)

from .tiny import TINY_RN, TINY_VIT, make_clip

METADATA = ('input_resolution', 'context_length', 'vocab_size')


class NotWeights:
    """An arbitrary object: pickling it stores a reference to this module's code."""

    def __init__(self):
        self.payload = [1, 2, 3]


class Exploit:
    """Unpickling this would create a directory, i.e. run code chosen by the file's author."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


@pytest.fixture(scope='module')
def inputs():
    torch.manual_seed(0)
    return torch.randn(2, 3, 64, 64), tokenize(['a photo of a cat', 'a dog'])


def outputs(model: CLIP, inputs) -> tuple:
    image, text = inputs
    with torch.no_grad():
        return model.encode_image(image), model.encode_text(text)


def assert_same_model(loaded: CLIP, model: CLIP, inputs, **tolerance):
    assert isinstance(loaded, CLIP)
    assert not loaded.training
    assert loaded.dtype == torch.float32
    for ours, expected in zip(outputs(loaded, inputs), outputs(model, inputs)):
        torch.testing.assert_close(ours, expected, **(tolerance or dict(rtol=0, atol=0)))


def with_metadata(state_dict: dict, config: dict) -> dict:
    """Adds the int64 scalars that OpenAI's archives hold next to the weights."""
    state_dict = dict(state_dict)
    state_dict['input_resolution'] = torch.tensor(config['image_resolution'])
    state_dict['context_length'] = torch.tensor(config['context_length'])
    state_dict['vocab_size'] = torch.tensor(config['vocab_size'])
    return state_dict


class ArchiveLike(nn.Module):
    """Holds a CLIP's tensors at the same keys, plus OpenAI's int64 metadata scalars."""

    def __init__(self, model: CLIP, metadata: dict):
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, parameter in model.named_parameters(recurse=False):
            self.register_parameter(name, parameter)
        for name, value in metadata.items():
            self.register_buffer(name, value)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.ln_final(self.token_embedding(text)) @ self.text_projection


def write_torchscript(model: CLIP, path, text: torch.Tensor, config: dict) -> None:
    """Writes a TorchScript archive whose ``state_dict()`` is CLIP's plus the metadata scalars.

    A trivial forward is traced so that this helper does not depend on tracing CLIP itself
    (covered by ``test_trace_full_model``); the archive holds every tensor all the same.
    """
    holder = ArchiveLike(model, with_metadata({}, config))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        traced = torch.jit.trace(holder, text)
    assert set(traced.state_dict()) == set(model.state_dict()) | set(METADATA)
    traced.save(str(path))


def test_torchscript_archive_roundtrip(tiny_config, tiny_clip, inputs, tmp_path):
    path = tmp_path / 'clip.pt'
    write_torchscript(tiny_clip, path, inputs[1], tiny_config)
    state_dict = read_state_dict(path)
    assert set(state_dict) == set(tiny_clip.state_dict()) | set(METADATA)
    assert state_dict['input_resolution'].dtype == torch.int64
    assert int(state_dict['input_resolution']) == 64
    assert infer_clip_config(state_dict) == tiny_config
    assert_same_model(load(path), tiny_clip, inputs)


def test_trace_full_model(tiny_config, tiny_clip, inputs, tmp_path):
    """OpenAI's archives are traces of the whole model; ours must be traceable the same way."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        traced = torch.jit.trace(tiny_clip, inputs)
    path = tmp_path / 'traced.pt'
    traced.save(str(path))
    logits, _ = traced(*inputs)
    torch.testing.assert_close(logits, tiny_clip(*inputs)[0])
    assert_same_model(load(path), tiny_clip, inputs)


def test_build_model_accepts_archive_metadata(tiny_config, tiny_clip, inputs):
    state_dict = with_metadata(tiny_clip.state_dict(), tiny_config)
    assert infer_clip_config(state_dict) == tiny_config
    assert_same_model(build_model(state_dict), tiny_clip, inputs)


def test_plain_state_dict_roundtrip(tiny_config, tiny_clip, inputs, tmp_path):
    path = tmp_path / 'clip.pth'
    torch.save(tiny_clip.state_dict(), path)
    state_dict = read_state_dict(path)
    assert infer_clip_config(state_dict) == tiny_config
    for key, value in tiny_clip.state_dict().items():
        assert torch.equal(state_dict[key], value), key
    assert_same_model(load(str(path)), tiny_clip, inputs)


def test_mmengine_checkpoint_roundtrip(tiny_config, tiny_clip, inputs, tmp_path):
    path = tmp_path / 'iter_100.pth'
    torch.save({'meta': {'iter': 100, 'mmengine_version': '0.10.0', 'dataset_meta':
                         {'classes': ('wall', 'sky')}},
                'state_dict': tiny_clip.state_dict(),
                'optimizer': {'state': {}, 'param_groups': [{'lr': 1e-4, 'params': [0, 1]}]}},
               path)
    assert infer_clip_config(read_state_dict(path)) == tiny_config
    assert_same_model(load(path), tiny_clip, inputs)


def test_fp16_checkpoint_loads_as_fp32(tiny_config, tiny_clip, inputs, tmp_path):
    path = tmp_path / 'clip_fp16.pth'
    half = {key: value.half() if value.is_floating_point() else value
            for key, value in with_metadata(tiny_clip.state_dict(), tiny_config).items()}
    torch.save(half, path)
    state_dict = read_state_dict(path)
    assert all(value.dtype in (torch.float32, torch.int64) for value in state_dict.values())
    assert infer_clip_config(state_dict) == tiny_config
    loaded = load(path)
    # exactly the fp16-rounded weights, computed in fp32 ...
    rounded = make_clip(tiny_config)
    rounded.load_state_dict({key: value.float() if value.is_floating_point() else value
                             for key, value in half.items() if key not in METADATA})
    assert_same_model(loaded, rounded, inputs)
    # ... and close to the original fp32 model
    assert_same_model(loaded, tiny_clip, inputs, rtol=1e-2, atol=1e-2)


def test_infer_clip_config_of_full_size_layouts():
    """The architecture is recovered from key names and shapes alone (meta tensors suffice)."""
    def meta(*shape):
        return torch.empty(shape, device='meta')

    text = {'positional_embedding': meta(77, 512), 'token_embedding.weight': meta(49408, 512),
            'ln_final.weight': meta(512), 'text_projection': meta(512, 1024),
            **{f'transformer.resblocks.{i}.attn.in_proj_weight': meta(1536, 512)
               for i in range(12)}}
    rn50 = dict(text, **{'visual.attnpool.positional_embedding': meta(50, 2048),
                         'visual.layer1.0.conv1.weight': meta(64, 64, 1, 1)})
    for stage, blocks in zip((1, 2, 3, 4), (3, 4, 6, 3)):
        rn50.update({f'visual.layer{stage}.{i}.bn1.weight': meta(1) for i in range(blocks)})
    assert infer_clip_config(rn50) == dict(
        embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3), vision_width=64,
        vision_patch_size=None, context_length=77, vocab_size=49408, transformer_width=512,
        transformer_heads=8, transformer_layers=12)
    vit = dict(text, text_projection=meta(512, 512), **{
        'visual.proj': meta(768, 512), 'visual.conv1.weight': meta(768, 3, 16, 16),
        'visual.positional_embedding': meta(197, 768),
        **{f'visual.transformer.resblocks.{i}.attn.in_proj_weight': meta(2304, 768)
           for i in range(12)}})
    assert infer_clip_config(vit) == dict(
        embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
        vision_patch_size=16, context_length=77, vocab_size=49408, transformer_width=512,
        transformer_heads=8, transformer_layers=12)


def test_infer_clip_config_rejects_other_state_dicts():
    with pytest.raises(CheckpointError, match='not a CLIP state dict'):
        infer_clip_config({'conv1.weight': torch.zeros(1)})


# ----------------------------------------------------------------------------- bad files


def test_missing_file_says_where_weights_go(tmp_path):
    path = tmp_path / 'RN50.pt'
    with pytest.raises(FileNotFoundError, match='pretrained/') as info:
        load(path)
    assert str(path) in str(info.value)
    with pytest.raises(FileNotFoundError, match='pretrained/'):
        read_state_dict(str(path))


@pytest.mark.parametrize('kind', ['state_dict', 'torchscript'])
def test_truncated_file_is_refused(kind, inputs, tmp_path):
    model = make_clip(TINY_VIT)
    path = tmp_path / f'clip_{kind}.pt'
    if kind == 'torchscript':
        write_torchscript(model, path, inputs[1], TINY_VIT)
    else:
        torch.save(model.state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=str(path.name)):
        read_state_dict(path)


@pytest.mark.parametrize('data', [
    b'',
    b'not a checkpoint\nbut a text file\n' * 10,
    b'{"state_dict": {}}',
    bytes(range(256)) * 4,
    b'PK\x03\x04' + bytes(200),  # starts like a zip archive
    b'\x80\x02.',  # a pickle that stops with nothing on its stack
    b'\x80\x02h\x05.',  # a pickle that reads an unset memo slot
], ids=['empty', 'text', 'json', 'bytes', 'zip-magic', 'empty-pickle', 'bad-memo'])
def test_garbage_file_is_refused(data, tmp_path):
    path = tmp_path / 'garbage.pth'
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match='garbage.pth'):
        read_state_dict(path)


@pytest.mark.parametrize('seed', range(8))
def test_random_bytes_are_refused(seed, tmp_path):
    path = tmp_path / f'random_{seed}.bin'
    path.write_bytes(torch.randint(0, 256, (1024,), dtype=torch.uint8,
                                   generator=torch.Generator().manual_seed(seed)).numpy().tobytes())
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # odd "pickle protocol" warnings from the unpickler
        with pytest.raises(CheckpointError, match=path.name):
            read_state_dict(path)


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / 'object.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': NotWeights()}, path)
    with pytest.raises(CheckpointError, match='weights_only') as info:
        read_state_dict(path)
    assert 'code' in str(info.value) and 'object.pth' in str(info.value)


def test_malicious_pickle_does_not_run(tmp_path):
    marker = tmp_path / 'was_executed'
    path = tmp_path / 'exploit.pth'
    torch.save(Exploit(str(marker)), path)
    with pytest.raises(CheckpointError, match='weights_only'):
        load(path)
    assert not marker.exists()


@pytest.mark.parametrize('content', [[torch.zeros(1)], {'a': 1}, {'state_dict': [1, 2]}])
def test_non_state_dict_is_refused(content, tmp_path):
    path = tmp_path / 'other.pth'
    torch.save(content, path)
    with pytest.raises(CheckpointError, match='state dict'):
        read_state_dict(path)


# ------------------------------------------------- checkpoints of the contrastive CLIP model
def save_like_the_runner(clip: CLIP, path) -> str:
    """``clip`` as a checkpoint of the contrastive CLIP model (OpenAI's keys under ``clip.``),
    written by mmengine's ``save_checkpoint`` with what its runner puts next to the weights:
    meta, a message hub of ``HistoryBuffer``s and numpy values, optimiser state."""
    optimizer = torch.optim.AdamW(clip.parameters(), lr=0.0)  # lr 0: the weights stay
    clip.token_embedding.weight.sum().backward()
    optimizer.step()
    hub = MessageHub.get_instance('test_checkpoint_runner')
    hub.update_scalar('train/loss', 0.5)
    hub.update_scalar('train/lr', np.float64(1e-5))
    hub.update_info('iter', 10)
    state_dict = {f'clip.{key}': value for key, value in weights_to_cpu(clip.state_dict()).items()}
    save_checkpoint(dict(meta=dict(epoch=0, iter=10, seed=np.int64(0)), state_dict=state_dict,
                         message_hub=hub.state_dict(), optimizer=optimizer.state_dict()),
                    str(path))
    return str(path)


def test_run_checkpoint_of_the_contrastive_model_is_read_as_clip_weights(
        tiny_config, tiny_clip, inputs, tmp_path):
    path = save_like_the_runner(tiny_clip, tmp_path / 'iter_10.pth')
    with pytest.raises(pickle.UnpicklingError):  # what the allowlist of run checkpoints is for
        torch.load(path, weights_only=True)
    weights = read_clip_weights(path)
    assert weights.keys() == tiny_clip.state_dict().keys()  # `clip.` stripped
    torch.testing.assert_close(weights['text_projection'], tiny_clip.text_projection,
                               rtol=0, atol=0)
    assert_same_model(load(path), tiny_clip, inputs)


def test_load_tower_takes_a_run_checkpoint_of_the_contrastive_model(tiny_config, tiny_clip,
                                                                    tmp_path):
    path = save_like_the_runner(tiny_clip, tmp_path / 'iter_10.pth')
    fresh = CLIP(**tiny_config)
    load_tower(fresh.visual, path, 'visual')
    for key, value in tiny_clip.visual.state_dict().items():
        assert torch.equal(fresh.visual.state_dict()[key], value), key


def test_prefix_is_stripped_only_when_every_clip_key_carries_it(tiny_clip, tmp_path):
    weights = tiny_clip.state_dict()
    mixed = {**weights, 'clip.text_projection': torch.zeros(1)}  # bare CLIP keys win
    torch.save({'state_dict': mixed}, tmp_path / 'mixed.pth')
    assert read_clip_weights(tmp_path / 'mixed.pth').keys() == mixed.keys()
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(1),
                               'clip.backbone.x': torch.zeros(1)}}, tmp_path / 'seg.pth')
    with pytest.raises(CheckpointError, match=r"seg\.pth' holds no CLIP model.*contrastive"):
        read_clip_weights(tmp_path / 'seg.pth')


class GetattrExploit:
    """Reaches a private attribute of an allowed class through ``getattr``."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


@pytest.mark.parametrize('payload', ['exploit', 'getattr'])
def test_run_checkpoint_with_an_unsafe_global_is_refused(tiny_clip, payload, tmp_path):
    marker = tmp_path / 'was_executed'
    path = tmp_path / 'iter_10.pth'
    state_dict = {f'clip.{key}': value for key, value in tiny_clip.state_dict().items()}
    hub = Exploit(str(marker)) if payload == 'exploit' else GetattrExploit()
    torch.save(dict(state_dict=state_dict, message_hub=hub), path)
    with pytest.raises(CheckpointError, match=r"refusing to load checkpoint '.*iter_10\.pth'"):
        read_clip_weights(path)
    assert not marker.exists()


# ----------------------------------------------------------------------------- load_into


def test_wrong_architecture_lists_mismatches():
    resnet_weights = make_clip(TINY_RN).state_dict()
    vit_model = CLIP(**TINY_VIT)
    own = vit_model.state_dict()
    missing = [key for key in own if key not in resnet_weights]
    unexpected = [key for key in resnet_weights if key not in own]
    with pytest.raises(CheckpointError) as info:
        load_into(vit_model, resnet_weights, source='RN.pt')
    message = str(info.value)
    assert 'RN.pt' in message
    assert f'{len(missing)} missing' in message and missing[0] in message
    assert f'{len(unexpected)} unexpected' in message and unexpected[0] in message
    assert 'visual.conv1.weight: checkpoint (4, 3, 3, 3) vs model (64, 3, 16, 16)' in message


def test_shape_mismatch_is_listed():
    weights = make_clip(dict(TINY_RN, embed_dim=16)).state_dict()
    with pytest.raises(CheckpointError, match=r'text_projection: checkpoint \(64, 16\) vs '
                                              r'model \(64, 32\)'):
        load_into(CLIP(**TINY_RN), weights, source='narrow.pth')


def test_allowed_missing_and_unexpected_patterns():
    torch.manual_seed(0)
    weights = text_state_dict(make_clip(TINY_RN, seed=1).state_dict())
    weights = {key: value for key, value in weights.items() if not key.startswith('ln_final.')}
    weights['extra.head.weight'] = torch.zeros(3)
    module = TextTransformer(context_length=77, vocab_size=49408, width=64, heads=1, layers=2,
                             embed_dim=32)
    before = module.ln_final.weight.clone()
    with pytest.raises(CheckpointError) as info:
        load_into(module, weights, source='partial.pth')
    assert 'ln_final.weight' in str(info.value) and 'extra.head.weight' in str(info.value)
    with pytest.raises(CheckpointError, match='extra.head.weight'):
        load_into(module, weights, source='partial.pth', allowed_missing=('ln_final.*',))

    load_into(module, weights, source='partial.pth', allowed_missing=('ln_final.*',),
              allowed_unexpected=('extra.*',))
    assert torch.equal(module.ln_final.weight, before)  # left as initialised
    assert torch.equal(module.text_projection, weights['text_projection'])
    assert torch.equal(module.transformer.resblocks[1].mlp.c_fc.weight,
                       weights['transformer.resblocks.1.mlp.c_fc.weight'])


def test_text_positions_are_truncated_to_the_context_length():
    """DenseCLIP's text encoder uses 13 of CLIP's 77 positions: the first 13, unchanged."""
    weights = text_state_dict(make_clip(TINY_RN).state_dict())
    module = TextTransformer(context_length=13, vocab_size=49408, width=64, heads=1, layers=2,
                             embed_dim=32)
    load_into(module, weights, source='clip.pt', text_positions=('positional_embedding',))
    assert module.positional_embedding.shape == (13, 64)
    assert torch.equal(module.positional_embedding, weights['positional_embedding'][:13])


@pytest.mark.parametrize('length', [13, 10, 5])
def test_text_positions_truncate_to_the_first_rows(length):
    embedding = torch.randn(77, 8)
    assert torch.equal(truncate_text_positions(embedding, (length, 8)), embedding[:length])


def test_text_positions_cannot_grow():
    with pytest.raises(CheckpointError, match='cannot be truncated'):
        truncate_text_positions(torch.randn(13, 8), (77, 8))


def expected_grid_resize(embedding: torch.Tensor, side: int) -> torch.Tensor:
    old = int((embedding.shape[0] - 1) ** 0.5)
    grid = embedding[1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(side, side), mode='bilinear', align_corners=False)
    return torch.cat([embedding[:1], grid[0].flatten(1).t()])


def test_vit_grid_positions_are_resized_bilinearly():
    weights = visual_state_dict(make_clip(TINY_VIT).state_dict())
    assert weights['positional_embedding'].shape == (17, 64)  # 64 px / 16 = 4 x 4
    module = VisionTransformer(input_resolution=96, patch_size=16, width=64, layers=2, heads=1,
                               output_dim=32)
    load_into(module, weights, source='vit.pt', grid_positions=('positional_embedding',))
    resized = module.positional_embedding
    assert resized.shape == (37, 64)  # 96 px / 16 = 6 x 6
    assert torch.equal(resized[0], weights['positional_embedding'][0])  # class position
    torch.testing.assert_close(resized, expected_grid_resize(weights['positional_embedding'], 6))


def test_attention_pool_grid_positions_are_resized_bilinearly():
    weights = visual_state_dict(make_clip(TINY_RN).state_dict())
    module = ModifiedResNet((1, 1, 1, 1), output_dim=32, heads=4, input_resolution=128, width=8)
    load_into(module, weights, source='rn.pt',
              grid_positions=('attnpool.positional_embedding',))
    resized = module.attnpool.positional_embedding
    assert resized.shape == (17, 256)  # 128 px / 32 = 4 x 4
    torch.testing.assert_close(
        resized, expected_grid_resize(weights['attnpool.positional_embedding'], 4))
    assert torch.equal(module.layer4[0].conv3.weight, weights['layer4.0.conv3.weight'])


def test_grid_resize_refuses_other_widths():
    with pytest.raises(CheckpointError, match='same width'):
        resize_grid_positions(torch.randn(17, 8), (37, 16))
