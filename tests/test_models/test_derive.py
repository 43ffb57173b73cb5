"""The widths DenseCLIP derives (``denseclip.models.derive``): a config states each once.

The embedding width comes from the backbone (its ``output_dim``), the number and width of the
learnable contexts from the text encoder; a value that a config states anyway must agree, or
the build fails naming both config keys. The full-size configs are built on the meta device
(shapes only, no memory, well under a second); the rest uses the tiny DenseCLIP of
``conftest.py`` (embedding width 32, 9 - 5 = 4 contexts of width 32).
"""
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS

from denseclip.models import CLIPResNetWithAttention

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / 'configs'
RN50 = CONFIGS / 'denseclip/denseclip_r50_fpn_8xb4-80k_ade20k-512x512.py'
RN50_PRE_POST = CONFIGS / 'ablations/denseclip_r50-pre-post-prompt_fpn_8xb4-80k_ade20k-512x512.py'


def build_on_meta(config: Path, **backbone) -> torch.nn.Module:
    """The config's model with ``backbone`` keys changed, built on the meta device."""
    cfg = Config.fromfile(str(config))
    cfg.model.class_names = ['wall', 'sky', 'floor']  # the widths do not depend on them
    cfg.model.backbone.update(backbone)
    with torch.device('meta'):
        return MODELS.build(cfg.model)


def text_side_widths(model: torch.nn.Module) -> dict[str, int]:
    """Every width on the text side that must equal the backbone's embedding width."""
    widths = {'text_encoder.text_projection': model.text_encoder.text_projection.shape[1]}
    if model.context_decoder is not None:
        widths['context_decoder.visual_dim'] = model.context_decoder.visual_dim
        widths['context_decoder.out_proj'] = model.context_decoder.out_proj[1].out_features
        widths['gamma'] = model.gamma.shape[0]
    if model.pre_prompter is not None:
        widths['pre_prompter.queries'] = model.pre_prompter.queries.shape[1]
        widths['pre_prompter.decoder.visual_dim'] = model.pre_prompter.decoder.visual_dim
    return widths


# ------------------------------------------------------------------ derived from the configs
@pytest.mark.parametrize('config', [RN50, RN50_PRE_POST], ids=['post', 'pre+post'])
@pytest.mark.parametrize('output_dim', [1024, 512], ids=['RN50', 'RN101'])
def test_embedding_width_is_the_backbones_output_dim(config: Path, output_dim: int):
    """One line, ``model.backbone.output_dim``, sets the width of the whole text branch."""
    model = build_on_meta(config, output_dim=output_dim)
    assert model.backbone.embed_dim == output_dim
    assert model.backbone.attnpool.c_proj.out_features == output_dim
    assert model.text_encoder.embed_dim == output_dim
    widths = text_side_widths(model)
    assert len(widths) == (6 if config == RN50_PRE_POST else 4)
    assert widths == dict.fromkeys(widths, output_dim)


def test_contexts_are_the_text_positions_left_by_the_names():
    """13 text positions - 5 name tokens = 8 contexts of the text encoder's width (512)."""
    post = build_on_meta(RN50)
    assert post.text_encoder.context_length == 13 and post.texts.shape[1] == 5
    assert post.contexts.shape == (1, 8, 512)
    pre = build_on_meta(RN50_PRE_POST).pre_prompter
    assert pre.queries.shape[0] == 8
    assert pre.decoder.out_proj[1].out_features == 512  # contexts are text tokens


def test_tiny_widths_are_derived(build_denseclip):
    model = build_denseclip('pre+post')
    assert model.text_encoder.embed_dim == model.backbone.embed_dim == 32
    assert text_side_widths(model) == dict.fromkeys(text_side_widths(model), 32)
    assert model.pre_prompter.queries.shape == (4, 32)  # 9 - 5 contexts
    assert model.pre_prompter.decoder.out_proj[1].out_features == 32


def test_stated_values_that_agree_are_accepted(denseclip_cfg, build_denseclip):
    """Configs written before the widths were derived still build, to the same model."""
    cfg = denseclip_cfg('pre+post')
    cfg.text_encoder.embed_dim = 32
    cfg.context_decoder.visual_dim = 32
    cfg.pre_prompter.update(num_contexts=4, visual_dim=32, text_width=32)
    torch.manual_seed(0)
    stated = MODELS.build(cfg)
    torch.manual_seed(0)
    derived = MODELS.build(denseclip_cfg('pre+post'))
    for (key, value), (other_key, other) in zip(stated.state_dict().items(),
                                                derived.state_dict().items()):
        assert key == other_key and torch.equal(value, other), key


# ------------------------------------------------------------------ stated values that disagree
@pytest.mark.parametrize('part, key, value, source', [
    ('text_encoder', 'embed_dim', 512, 'model.backbone.output_dim=32'),
    ('context_decoder', 'visual_dim', 512, 'model.backbone.output_dim=32'),
    ('pre_prompter', 'visual_dim', 512, 'model.backbone.output_dim=32'),
    ('pre_prompter', 'num_contexts', 8,
     'model.text_encoder.context_length - model.context_length = 9 - 5 = 4'),
    ('pre_prompter', 'text_width', 512, 'model.text_encoder.transformer_width=32'),
])
def test_a_stated_value_that_disagrees_names_both_keys(denseclip_cfg, part, key, value, source):
    """Raised at build time; the pre-model prompter is checked even when unused ('post')."""
    cfg = denseclip_cfg('post')
    cfg.setdefault('pre_prompter', dict(type='PreModelPrompter', transformer_width=16,
                                        transformer_heads=2, transformer_layers=1))
    cfg[part][key] = value
    with pytest.raises(ValueError, match=re.escape(
            f'model.{part}.{key}={value} disagrees with {source}; drop it (it is derived) or '
            'make the two agree')):
        MODELS.build(cfg)


def test_rn50_config_with_rn101_text_width_fails_at_build_time():
    """The mistake the derivation prevents: a width stated twice, one of them wrong."""
    cfg = Config.fromfile(str(RN50))
    cfg.model.class_names = ['wall', 'sky', 'floor']
    cfg.model.text_encoder.embed_dim = 512
    with pytest.raises(ValueError, match=re.escape(
            'model.text_encoder.embed_dim=512 disagrees with model.backbone.output_dim=1024')):
        with torch.device('meta'):
            MODELS.build(cfg.model)


# ------------------------------------------------------------------ what a backbone must offer
@pytest.mark.parametrize('backbone, name', [
    (dict(type='CLIPResNet', layers=(1, 1, 1, 1), width=8), 'CLIPResNet'),
    (dict(type='CLIPVisionTransformer', input_resolution=64, patch_size=16, width=32, layers=4,
          heads=2, output_dim=32, out_indices=(0, 1, 2, 3)), 'CLIPVisionTransformer'),
    (dict(type='ResNet', depth=18, stem_channels=16, base_channels=8), 'ResNet'),
], ids=['clip-resnet-trunk', 'vit-without-embeddings', 'mmseg-resnet'])
def test_backbone_without_embeddings(denseclip_cfg, backbone, name):
    with pytest.raises(ValueError, match=re.escape(
            f'model.backbone: {name} returns no (global, dense) embeddings (it has no '
            'embed_dim), but DenseCLIP matches them with the text; use '
            'CLIPResNetWithAttention, CLIPVisionTransformer with get_embeddings=True, or wrap '
            'the backbone in BackboneWithAttentionPool')):
        MODELS.build(denseclip_cfg(backbone=backbone))


@MODELS.register_module(force=True)
class RenamedCLIPResNet(CLIPResNetWithAttention):
    """CLIP's ResNet under another name: a capability, not a list of names, admits it."""


def test_any_clip_image_tower_takes_model_pretrained(denseclip_cfg, make_clip, save_clip):
    clip = make_clip('resnet')
    cfg = denseclip_cfg(pretrained=save_clip(clip))
    cfg.backbone.type = 'RenamedCLIPResNet'
    model = MODELS.build(cfg)
    model.init_weights()
    assert torch.equal(model.backbone.attnpool.c_proj.weight, clip.visual.attnpool.c_proj.weight)
    assert model.text_encoder.embed_dim == 32
