"""Configuration and weight errors: one clear message that names the config key or the file.

Uses the tiny DenseCLIP of ``conftest.py`` (4 classes, ResNet width 8, 64 px input).
"""
import re

import pytest
import torch
from mmseg.registry import MODELS

from denseclip.clip import CheckpointError


def build(denseclip_cfg, **changes):
    return MODELS.build(denseclip_cfg(**changes))


def with_backbone(denseclip_cfg, **backbone):
    cfg = denseclip_cfg()
    cfg.backbone.update(backbone)
    return cfg


# ------------------------------------------------------------------ class names
def test_num_classes_disagreeing_with_class_names(denseclip_cfg):
    cfg = denseclip_cfg()
    cfg.decode_head.num_classes = 150
    with pytest.raises(ValueError, match=r'model\.decode_head\.num_classes=150 disagrees with '
                                         r'the 4 class names; drop it'):
        MODELS.build(cfg)


@pytest.mark.parametrize('names, error, message', [
    ([], ValueError, r'model\.class_names is empty'),
    (None, ValueError, r'model\.class_names is not set'),
    ('wall', TypeError, r"model\.class_names must be a list of class names, got 'wall'"),
])
def test_missing_or_malformed_class_names(denseclip_cfg, names, error, message):
    with pytest.raises(error, match=message):
        build(denseclip_cfg, class_names=names)


def test_class_name_longer_than_the_text_context(denseclip_cfg):
    name = 'a very long class name indeed'
    with pytest.raises(ValueError, match=re.escape(
            f"model.class_names: {{'{name}': 8}} (name: tokens with SOS and EOS) do not fit "
            'model.context_length=5; shorten those names, or raise model.context_length and '
            'model.text_encoder.context_length')):
        build(denseclip_cfg, class_names=['wall', name])


# ------------------------------------------------------------------ model structure
def test_unknown_prompting_mode(denseclip_cfg):
    with pytest.raises(ValueError, match=r"model\.prompting must be one of \('none', 'pre', "
                                         r"'post', 'pre\+post'\), got 'middle'"):
        build(denseclip_cfg, prompting='middle')


def test_unknown_backbone_type(denseclip_cfg):
    with pytest.raises(KeyError, match=r"model\.backbone\.type='CLIPResNet50': CLIPResNet50 is "
                                       r'not in the mmseg::model registry \(unknown type\); did '
                                       r"you mean 'CLIPResNet'"):
        MODELS.build(with_backbone(denseclip_cfg, type='CLIPResNet50'))


def test_misspelled_backbone_with_clip_weights_is_unknown_not_foreign(denseclip_cfg):
    """With model.pretrained set, the CLIP-backbone check must not hide the spelling."""
    cfg = with_backbone(denseclip_cfg, type='CLIPResNetWithAtention')
    cfg.pretrained = 'pretrained/RN50.pt'
    with pytest.raises(KeyError, match=r"did you mean 'CLIPResNetWithAttention'") as info:
        MODELS.build(cfg)
    assert 'not a CLIP backbone' not in str(info.value)


@pytest.mark.parametrize('index', [4, -1])
def test_score_concat_index_out_of_range(denseclip_cfg, index):
    with pytest.raises(ValueError, match=rf'model\.score_concat_index={index} is out of range '
                                         r'for the 4 levels of model\.neck\.in_channels'):
        build(denseclip_cfg, score_concat_index=index)


# ------------------------------------------------------------------ resolutions
def test_resnet_input_resolution_not_a_multiple_of_the_stride(denseclip_cfg):
    with pytest.raises(ValueError, match=r'model\.backbone\.input_resolution=100 is not a '
                                         r'multiple of 32 .* e\.g\. 96'):
        MODELS.build(with_backbone(denseclip_cfg, input_resolution=100))


def test_vit_input_resolution_not_a_multiple_of_the_patch(denseclip_cfg):
    cfg = denseclip_cfg()
    cfg.backbone = dict(type='CLIPVisionTransformer', input_resolution=72, patch_size=16,
                        width=32, layers=4, heads=2, output_dim=32, get_embeddings=True)
    with pytest.raises(ValueError, match=r'model\.backbone\.input_resolution=72 is not a '
                                         r'multiple of patch_size=16.* e\.g\. 64'):
        MODELS.build(cfg)


def test_input_too_small_for_the_positional_grid(build_denseclip):
    model = build_denseclip().eval()
    with pytest.raises(ValueError, match=r'CLIPResNetWithAttention: input \(16, 24\) is smaller '
                                         r'than its output stride 32'):
        with torch.no_grad():
            model.extract_feat(torch.zeros(1, 3, 16, 24))


# ------------------------------------------------------------------ CLIP weights
def test_missing_clip_weights_say_where_to_get_them(denseclip_cfg, tmp_path):
    model = build(denseclip_cfg, pretrained=str(tmp_path / 'pretrained/RN50.pt'))
    with pytest.raises(FileNotFoundError, match=r"pretrained/RN50\.pt' does not exist\. "
                                                r'Download the OpenAI CLIP archives.*'
                                                r'pretrained/README\.md'):
        model.init_weights()


def test_clip_weights_of_another_architecture(denseclip_cfg, make_clip, save_clip):
    path = save_clip(make_clip('resnet', vision_width=16))  # the model has width 8
    model = build(denseclip_cfg, pretrained=path)
    with pytest.raises(CheckpointError, match=rf'{re.escape(path)} does not fit '
                                              r'CLIPResNetWithAttention \(wrong architecture'):
        model.init_weights()


@pytest.mark.parametrize('content, what', [
    (b'', r'the file is empty \(0 bytes\)\. Download or copy it again'),
    (b'<html>404 Not Found</html>', r"it is a text file, not a checkpoint \(it begins "
                                    r"'<html>404 Not Found</html>'\)\. Check the path; .*failed "
                                    r'download'),
    ('half', r'the file is truncated, corrupt or not a PyTorch checkpoint \(.*\)\. Download or '
             r'copy it again; for CLIP weights see pretrained/README\.md'),
], ids=['empty', 'html', 'half'])
def test_truncated_or_foreign_clip_weights(denseclip_cfg, make_clip, save_clip, content, what):
    path = save_clip(make_clip('resnet'))
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2] if content == 'half' else content)
    model = build(denseclip_cfg, pretrained=path)
    with pytest.raises(CheckpointError, match=rf"cannot read checkpoint '{re.escape(path)}': "
                                              rf'{what}') as info:
        model.init_weights()
    assert 'weights_only` set to `False`' not in str(info.value)  # torch's advice
    assert 'file an issue' not in str(info.value)
