"""open_clip image-text models as DenseCLIP's towers, against open_clip itself.

open_clip is the reference: tiny architectures are added to its registry (JSON configs, as
its own ``model_configs``), built with ``open_clip.create_model`` and randomised; their
checkpoints are saved here and loaded through DenseCLIP's configs. Needs the ``open_clip``
extra (``pip install -e .[open_clip]``).
"""
import json
import subprocess
import sys

import open_clip
import pytest
import safetensors.torch
import torch
from mmseg.registry import MODELS

from denseclip.clip.errors import CheckpointError
from denseclip.clip.layers import resize_grid_embedding
from denseclip.clip.open_clip_weights import split_towers
from denseclip.clip.tokenizer import tokenize
from denseclip.models.backbones.open_clip_visual import OpenCLIPVisionBackbone
from denseclip.models.open_clip_text import OpenCLIPTextContextEncoder

#: Text tower of every tiny model: CLIP's BPE vocabulary, width 16, one layer, 13 positions.
TEXT = dict(context_length=13, vocab_size=49408, width=16, heads=2, layers=1)
#: One tiny architecture per kind of open_clip image tower (64 px), embedding width 16.
TINY = {
    'dc-test-vit': dict(vision_cfg=dict(image_size=64, layers=4, width=32, head_width=16,
                                        patch_size=16)),
    'dc-test-rn': dict(vision_cfg=dict(image_size=64, layers=[1, 1, 1, 1], width=8,
                                       head_width=64)),
    'dc-test-convnext': dict(vision_cfg=dict(timm_model_name='convnext_atto', timm_pool='',
                                             timm_proj='linear', image_size=64)),
    # EVA02-CLIP's layout: the text tower under ``text.``, pooled at the last position here
    'dc-test-custom-text': dict(custom_text=True, vision_cfg=dict(
        image_size=64, layers=4, width=32, head_width=16, patch_size=16),
        text_cfg=dict(TEXT, pool_type='last')),
    # EVA02-CLIP's image tower: a timm ViT trunk (not supported as a backbone yet)
    'dc-test-timm-vit': dict(custom_text=True, vision_cfg=dict(
        timm_model_name='vit_tiny_patch16_224', timm_pool='token', timm_proj=None,
        image_size=64)),
}
#: The backbone level whose grid is that of the dense embeddings (the score map's).
SCORE_LEVEL = {'dc-test-vit': 2, 'dc-test-rn': 3, 'dc-test-convnext': 3,
               'dc-test-custom-text': 2}
NAMES = ('wall', 'building', 'sky', 'floor')


@pytest.fixture(scope='module', autouse=True)
def tiny_configs(tmp_path_factory):
    """Adds the tiny architectures to open_clip's registry."""
    folder = tmp_path_factory.mktemp('open_clip_configs')
    for name, config in TINY.items():
        config = dict(dict(embed_dim=16, text_cfg=TEXT), **config)
        (folder / f'{name}.json').write_text(json.dumps(config))
    open_clip.add_model_config(folder)


def reference(name: str, randomize, seed: int = 0) -> torch.nn.Module:
    """open_clip's model of ``name`` with random weights (norms and biases perturbed too)."""
    torch.manual_seed(seed)
    return randomize(open_clip.create_model(name, pretrained=None), seed).eval()


def save(model: torch.nn.Module, path, kind: str = 'plain') -> str:
    """Saves as a plain ``.bin``, an open_clip training checkpoint ``.pt`` or ``.safetensors``."""
    state = model.state_dict()
    if kind == 'safetensors':
        safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif kind == 'training':  # open_clip's train script: DDP keys and its bookkeeping
        torch.save(dict(epoch=3, name='run', state_dict={f'module.{k}': v
                                                          for k, v in state.items()}), path)
    else:
        torch.save(state, path)
    return str(path)


@pytest.mark.parametrize('name', ['dc-test-vit', 'dc-test-rn', 'dc-test-convnext'])
def test_global_embedding_is_encode_image(name, randomize, tmp_path):
    model = reference(name, randomize)
    backbone = OpenCLIPVisionBackbone(name, input_resolution=64,
                                      pretrained=save(model, tmp_path / 'm.bin'))
    backbone.init_weights()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        *levels, (global_embedding, dense) = backbone.eval()(images)
        expected = model.encode_image(images)
    torch.testing.assert_close(global_embedding, expected, atol=1e-5, rtol=0)
    assert [level.shape[1] for level in levels] == list(backbone.out_channels)
    assert [level.shape[-1] for level in levels] == [16, 8, 4, 2]  # strides 4 .. 32
    grid = levels[SCORE_LEVEL[name]].shape[-2:]
    assert dense.shape == (2, 16, *grid)
    assert not torch.allclose(dense[..., 0, 0], dense[..., -1, -1])  # one per position


def test_vit_dense_embedding_is_the_projected_patch_tokens(randomize):
    """Each patch token through ``ln_post`` and ``proj``, as open_clip's own output tokens."""
    model = reference('dc-test-vit', randomize)
    backbone = OpenCLIPVisionBackbone('dc-test-vit', input_resolution=64).eval()
    backbone.visual.load_state_dict(model.visual.state_dict())
    model.visual.output_tokens = True
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        dense = backbone(images)[-1][1]
        _, tokens = model.visual(images)  # [1, 16, width] after ln_post
    expected = (tokens @ model.visual.proj).transpose(1, 2).reshape(1, 16, 4, 4)
    torch.testing.assert_close(dense, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize('name', ['dc-test-vit', 'dc-test-custom-text'])
def test_text_with_no_context_is_encode_text(name, randomize, tmp_path):
    model = reference(name, randomize)
    encoder = OpenCLIPTextContextEncoder(name, context_length=13,
                                         pretrained=save(model, tmp_path / 'm.safetensors',
                                                         'safetensors'))
    encoder.init_weights()
    texts = tokenize(['a cat', 'a dog on a mat', 'sky'], 13)
    with torch.no_grad():
        embedded = encoder(texts, torch.zeros(1, 0, encoder.width))  # [1, K, D]
        expected = model.encode_text(texts)
    torch.testing.assert_close(embedded[0], expected, atol=1e-5, rtol=0)


def test_contexts_follow_the_start_token(randomize):
    """Contexts ``c`` give what open_clip gives for ``[SOS] c [name] [EOS]`` as embeddings."""
    model = reference('dc-test-vit', randomize)
    encoder = OpenCLIPTextContextEncoder('dc-test-vit', context_length=13)
    encoder.text.load_state_dict({k: v for k, v in model.state_dict().items()
                                  if not k.startswith(('visual.', 'logit'))})
    names = tokenize(['sky', 'tree'], 9)  # [2, 9]: 4 contexts + 9 name tokens
    context = torch.randn(2, 4, 16)  # two images
    with torch.no_grad():
        embedded = encoder(names, context)  # [2, 2, D]
        for image in range(2):
            tokens = torch.cat([model.token_embedding(names[:, :1]),
                                context[image].expand(2, -1, -1),
                                model.token_embedding(names[:, 1:])], dim=1)
            x = model.ln_final(model.transformer(tokens + model.positional_embedding,
                                                 attn_mask=model.attn_mask))
            expected = x[torch.arange(2), names.argmax(-1) + 4] @ model.text_projection
            torch.testing.assert_close(embedded[image], expected, atol=1e-5, rtol=0)


def test_vit_input_off_the_patch_grid():
    """Padded to the patch grid; each level cropped to at most ``ceil(side * scale / 16)``."""
    backbone = OpenCLIPVisionBackbone('dc-test-vit', input_resolution=64).eval()
    with torch.no_grad():
        *levels, (global_embedding, dense) = backbone(torch.randn(1, 3, 72, 88))
    # the 0.5x level max-pools the 5 x 6 grid (flooring), as CLIPVisionTransformer does
    assert [tuple(level.shape[-2:]) for level in levels] == [(18, 22), (9, 11), (5, 6), (2, 3)]
    assert dense.shape == (1, 16, 5, 6) and global_embedding.shape == (1, 16)


def test_grid_resized_to_the_training_resolution(randomize, tmp_path):
    model = reference('dc-test-vit', randomize)
    backbone = OpenCLIPVisionBackbone('dc-test-vit', input_resolution=96,
                                      pretrained=save(model, tmp_path / 'm.bin'))
    backbone.init_weights()
    expected = resize_grid_embedding(model.visual.positional_embedding.detach(), 1, (6, 6))
    torch.testing.assert_close(backbone.visual.positional_embedding.detach(), expected)


def denseclip_model(denseclip_cfg, name: str, pretrained: str | None = None):
    backbone = OpenCLIPVisionBackbone(name, input_resolution=64)  # for its widths
    cfg = denseclip_cfg(
        pretrained=pretrained, score_concat_index=SCORE_LEVEL[name],
        backbone=dict(type='OpenCLIPVisionBackbone', model_name=name, input_resolution=64),
        text_encoder=dict(type='OpenCLIPTextContextEncoder', model_name=name, context_length=9),
        neck=dict(type='FPN', in_channels=list(backbone.out_channels), out_channels=16,
                  num_outs=4))
    return MODELS.build(cfg)


@pytest.mark.parametrize('name,kind', [('dc-test-vit', 'training'), ('dc-test-rn', 'plain'),
                                       ('dc-test-convnext', 'safetensors'),
                                       ('dc-test-custom-text', 'plain')])
def test_checkpoint_loads_into_denseclip_and_trains(name, kind, denseclip_cfg, randomize,
                                                    batch, tmp_path):
    """Every image and text tensor of the checkpoint lands in DenseCLIP; a training step runs."""
    model = reference(name, randomize)
    path = save(model, tmp_path / f'm.{"safetensors" if kind == "safetensors" else "pt"}', kind)
    segmentor = denseclip_model(denseclip_cfg, name, path)
    segmentor.init_weights()
    loaded = segmentor.state_dict()
    text_prefix = 'text.' if name == 'dc-test-custom-text' else ''
    for key, value in model.state_dict().items():
        if key.startswith('visual.'):
            torch.testing.assert_close(loaded[f'backbone.{key}'], value)
        elif key.startswith(text_prefix) and not key.startswith('logit'):
            ours = loaded[f'text_encoder.text.{key[len(text_prefix):]}']
            torch.testing.assert_close(ours, value[:9] if key.endswith('positional_embedding')
                                       else value)
    inputs, samples = batch
    segmentor.train()
    losses = segmentor.loss(inputs, samples)
    total = sum(value for key, value in losses.items() if 'loss' in key)
    total.backward()
    assert torch.isfinite(total)
    assert segmentor.contexts.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in segmentor.text_encoder.parameters())


def test_siglip_text_tower_is_refused():
    with pytest.raises(ValueError, match=r"ViT-B-16-SigLIP.*tokenises with .*not CLIP's BPE"):
        OpenCLIPTextContextEncoder('ViT-B-16-SigLIP')


def test_unknown_model_name_is_refused():
    with pytest.raises(ValueError, match=r"model.backbone.model_name='ViT-B-61'.*did you mean"):
        OpenCLIPVisionBackbone('ViT-B-61')


def test_embed_dim_must_be_the_models():
    with pytest.raises(ValueError, match='embed_dim=32.*16'):
        OpenCLIPTextContextEncoder('dc-test-vit', embed_dim=32)


def test_keys_of_neither_tower_are_refused(randomize, tmp_path):
    state = reference('dc-test-vit', randomize).state_dict()
    path = tmp_path / 'extra.bin'
    torch.save(dict(state, **{'decoder.weight': torch.zeros(2)}), path)
    backbone = OpenCLIPVisionBackbone('dc-test-vit', input_resolution=64, pretrained=str(path))
    with pytest.raises(CheckpointError, match=r'1 keys belong to neither tower.*decoder.weight'):
        backbone.init_weights()


def test_split_accounts_for_every_key():
    visual = {'visual.conv1.weight': torch.zeros(1)}
    text = {'token_embedding.weight': torch.zeros(1), 'transformer.resblocks.0.ln_1.bias':
            torch.zeros(1), 'ln_final.weight': torch.zeros(1), 'text_projection': torch.zeros(1)}
    unused = {key: torch.zeros(()) for key in ('logit_scale', 'logit_bias', 'input_resolution',
                                                'context_length', 'vocab_size')}
    towers = split_towers({**visual, **text, **unused}, 'x.bin')
    assert towers == ({'conv1.weight': visual['visual.conv1.weight']}, text)
    custom = split_towers({'module.visual.a': torch.zeros(1), 'module.text.b': torch.zeros(1)},
                          'x.bin')
    assert [list(tower) for tower in custom] == [['a'], ['b']]
    with pytest.raises(CheckpointError, match='holds no open_clip image tower'):
        split_towers(text, 'text.bin')


def test_checkpoint_of_another_architecture_is_refused(randomize, tmp_path):
    path = save(reference('dc-test-convnext', randomize), tmp_path / 'convnext.bin')
    backbone = OpenCLIPVisionBackbone('dc-test-vit', input_resolution=64, pretrained=path)
    with pytest.raises(CheckpointError, match='does not fit VisionTransformer'):
        backbone.init_weights()


def test_timm_trunk_without_four_strides_is_refused():
    with pytest.raises(ValueError, match=r"'dc-test-timm-vit'.*VisionTransformer does not give "
                                         r'four stages at strides 4/8/16/32'):
        OpenCLIPVisionBackbone('dc-test-timm-vit', input_resolution=64)


@pytest.mark.parametrize('name', ['dc-test-vit', 'dc-test-convnext'])
def test_activation_checkpointing_keeps_outputs_and_gradients(name, randomize):
    state = reference(name, randomize).visual.state_dict()
    outputs, grads = [], []
    for with_cp in (False, True):
        torch.manual_seed(0)
        backbone = OpenCLIPVisionBackbone(name, input_resolution=64, with_cp=with_cp).train()
        backbone.visual.load_state_dict(state)
        blocks = (backbone.visual.transformer if name == 'dc-test-vit'
                  else backbone.visual.trunk.stages[0])
        assert blocks.grad_checkpointing == with_cp
        images = torch.randn(2, 3, 64, 64)
        *levels, (global_embedding, dense) = backbone(images)
        loss = sum(level.square().mean() for level in levels) + dense.mean() + \
            global_embedding.mean()
        loss.backward()
        outputs.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in backbone.visual.parameters()
                                if p.grad is not None]))
    torch.testing.assert_close(outputs[0], outputs[1])
    torch.testing.assert_close(grads[0], grads[1])


def test_resnet_activation_checkpointing_is_refused():
    with pytest.raises(ValueError, match=r"with_cp: open_clip's ResNet \('dc-test-rn'\)"):
        OpenCLIPVisionBackbone('dc-test-rn', input_resolution=64, with_cp=True)


def test_import_denseclip_leaves_open_clip_unimported():
    """open_clip only: mmseg's TIMMBackbone imports timm, and so torchvision, where timm is
    installed (tests/test_package/test_open_clip_optional.py: denseclip needs neither)."""
    code = ('import sys, denseclip, denseclip.models.open_clip_text, '
            'denseclip.models.backbones.open_clip_visual; '
            'assert "open_clip" not in sys.modules, "imported"')
    subprocess.run([sys.executable, '-c', code], check=True)
