"""ZeroShotCLIPSegmentor: CLIP's text classifier at every dense embedding, inside mmseg.

Tiny CLIPs (``make_clip`` / ``save_clip`` in conftest.py) are saved as archives and loaded as
the segmentor's ``pretrained``; the classifier is recomputed by hand from the CLIP model
(``encode_text`` of every prompt, normalised, averaged, normalised) and the logits from the
backbone's dense output.
"""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from denseclip.clip import tokenize

ROOT = Path(__file__).resolve().parents[2]
IMAGE_SIZE = (64, 96)  # non-square: a 2 x 3 grid at stride 32
NAMES = ('wall', 'sky', 'tree')
TEMPLATES = ('a photo of a {}.', 'a drawing of the {}.')
TEXT = dict(type='CLIPTextContextEncoder', context_length=77, transformer_width=32,
            transformer_heads=2, transformer_layers=1)
RESNET = dict(type='CLIPResNetWithAttention', layers=(1, 1, 1, 1), width=8, output_dim=32,
              input_resolution=64)
VIT = dict(type='CLIPVisionTransformer', input_resolution=64, patch_size=16, width=64, layers=4,
           heads=1, output_dim=32, out_indices=(0, 1, 2, 3), get_embeddings=True)


def zero_shot_cfg(backbone: dict = RESNET, **changes) -> ConfigDict:
    cfg = dict(type='ZeroShotCLIPSegmentor', class_names=list(NAMES), templates=list(TEMPLATES),
               backbone=backbone, text_encoder=TEXT, test_cfg=dict(mode='whole'))
    return ConfigDict({**cfg, **changes})


@pytest.fixture(params=['resnet', 'vit'])
def clip_and_model(request, make_clip, save_clip):
    """A tiny CLIP and the zero-shot segmentor loaded from its archive (``init_weights``)."""
    clip = make_clip(request.param)
    backbone = RESNET if request.param == 'resnet' else VIT
    model = MODELS.build(zero_shot_cfg(backbone, pretrained=save_clip(clip)))
    model.init_weights()
    return clip, model.eval()


def classifier_by_hand(clip, names=NAMES, templates=TEMPLATES) -> torch.Tensor:
    """``[K, D]``: per name, the mean of its normalised prompt embeddings, normalised."""
    rows = []
    with torch.no_grad():
        for name in names:
            prompts = tokenize([template.format(name) for template in templates], 77)
            rows.append(F.normalize(F.normalize(clip.encode_text(prompts), dim=-1).mean(0),
                                    dim=0))
    return torch.stack(rows)


def test_logits_are_scaled_cosines_of_the_dense_embeddings(clip_and_model):
    clip, model = clip_and_model
    inputs = torch.randn(2, 3, *IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        *_, (global_embedding, dense) = model.backbone(inputs)
        logits = model._forward(inputs)
        if clip.visual.__class__.__name__ == 'ModifiedResNet':  # the tower was loaded
            square = inputs[:, :, :, :64]  # CLIP's own image tower at its 64 px resolution
            torch.testing.assert_close(model.backbone(square)[-1][0],
                                       clip.encode_image(square), rtol=1e-4, atol=1e-5)
    weight = classifier_by_hand(clip)
    expected = 100 * torch.einsum('bdhw,kd->bkhw', F.normalize(dense, dim=1), weight)
    assert logits.shape == (2, len(NAMES), *dense.shape[2:])
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    # upsampled to the input for mmseg's inference
    torch.testing.assert_close(model.encode_decode(inputs, []),
                               F.interpolate(expected, IMAGE_SIZE, mode='bilinear'),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model.score_maps(inputs), expected / 100, rtol=1e-4, atol=1e-5)


def test_whole_and_slide_inference_predict_every_pixel(make_clip, save_clip):
    model = MODELS.build(zero_shot_cfg(pretrained=save_clip(make_clip()))).eval()
    model.init_weights()
    inputs = torch.randn(1, 3, *IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
    def predict() -> SegDataSample:
        sample = SegDataSample(metainfo=dict(ori_shape=IMAGE_SIZE, img_shape=IMAGE_SIZE,
                                             pad_shape=IMAGE_SIZE))
        with torch.no_grad():
            return model.predict(inputs, [sample])[0]

    whole = predict()
    model.test_cfg = ConfigDict(mode='slide', crop_size=(64, 64), stride=(32, 32))
    slide = predict()
    model.test_cfg.slide_batch_size = 2
    batched = predict()
    for result in (whole, slide):
        assert result.seg_logits.data.shape == (len(NAMES), *IMAGE_SIZE)
        assert result.pred_sem_seg.data.shape == (1, *IMAGE_SIZE)
        assert set(result.pred_sem_seg.data.unique().tolist()) <= {0, 1, 2}
    # slide: the mean of the two 64 x 64 crops' logits where they overlap
    assert not torch.allclose(whole.seg_logits.data, slide.seg_logits.data)
    torch.testing.assert_close(batched.seg_logits.data, slide.seg_logits.data)
    with torch.no_grad():
        left = model.encode_decode(inputs[:, :, :, :64], [])[0]
    torch.testing.assert_close(slide.seg_logits.data[:, :, :32], left[:, :, :32])


def test_tta_merges_flipped_predictions(make_clip, save_clip):
    tta = MODELS.build(dict(type='SegTTAModel', module=zero_shot_cfg(
        pretrained=save_clip(make_clip()),
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[128] * 3, std=[64] * 3))))
    tta.module.init_weights()
    image = torch.randint(0, 256, (3, *IMAGE_SIZE), dtype=torch.uint8)
    metas = [dict(img_path='image.png', ori_shape=IMAGE_SIZE, img_shape=IMAGE_SIZE,
                  pad_shape=IMAGE_SIZE, flip=flip,
                  flip_direction='horizontal') for flip in (False, True)]
    data = dict(inputs=[[image], [image.flip(-1)]],
                data_samples=[[SegDataSample(metainfo=meta)] for meta in metas])
    with torch.no_grad():
        merged = tta.eval().test_step(data)[0]
        single = tta.module.test_step(dict(inputs=[image],
                                           data_samples=[SegDataSample(metainfo=metas[0])]))[0]
    assert merged.pred_sem_seg.data.shape == (1, *IMAGE_SIZE)
    assert not torch.equal(merged.seg_logits.data, single.seg_logits.data)


def test_nothing_to_train(make_clip, save_clip, batch):
    model = MODELS.build(zero_shot_cfg(pretrained=save_clip(make_clip())))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 0
    assert sum(p.numel() for p in model.parameters()) > 0
    with pytest.raises(RuntimeError, match='zero-shot segmentor has nothing to train'):
        model.loss(*batch)


def test_classifier_is_cached_and_rebuilt_when_names_or_weights_change(make_clip, save_clip):
    model = MODELS.build(zero_shot_cfg()).eval()
    first = model.classifier()
    assert model.classifier() is first and first.weight.shape == (3, 32)
    model.class_names = ['sky', 'grass']
    assert model.classifier().weight.shape == (2, 32) and model.out_channels == 2
    with model.using_classes(['a', 'b', 'c', 'd']):
        assert model.num_classes == 4 and model.classifier().weight.shape[0] == 4
    assert model.class_names == ('sky', 'grass')
    before = model.classifier()
    model.load_clip(save_clip(make_clip(seed=3)))  # new text weights: a new classifier
    after = model.classifier()
    assert after is not before and not torch.allclose(after.weight, before.weight)
    torch.testing.assert_close(after.weight, classifier_by_hand(make_clip(seed=3),
                                                                ('sky', 'grass')))


def test_class_names_from_the_dataset_config():
    from mmengine.config import Config

    from denseclip.datasets import synthetic_metainfo
    from denseclip.engine.config import fill_class_names, prepare_config
    cfg = prepare_config(ROOT / 'configs/zero_shot/zero-shot_clip-tiny-r_synthetic-128x128.py',
                         device='cpu')
    assert cfg.model.class_names == list(synthetic_metainfo(8)['classes'])
    model = MODELS.build(cfg.model)
    assert model.class_names == tuple(synthetic_metainfo(8)['classes'])
    assert model.out_channels == 8
    unfilled = Config(dict(model=dict(class_names=None),
                           test_dataloader=dict(dataset=dict(type='ADE20KDataset'))))
    assert len(fill_class_names(unfilled).model.class_names) == 150


def test_templates_from_a_file(tmp_path):
    path = tmp_path / 'templates.txt'
    path.write_text('# mine\nitap of a {}.\n\na sketch of the {}.\n')
    model = MODELS.build(zero_shot_cfg(templates=str(path)))
    assert model.templates == ('itap of a {}.', 'a sketch of the {}.')
    path.write_text('a photo\n')
    with pytest.raises(ValueError, match=r'templates.txt, line 1'):
        MODELS.build(zero_shot_cfg(templates=str(path)))
    with pytest.raises(ValueError, match=r'is one template: give a list'):
        MODELS.build(zero_shot_cfg(templates='a photo of a {}.'))
    with pytest.raises(FileNotFoundError, match=r'missing.txt'):
        MODELS.build(zero_shot_cfg(templates=str(tmp_path / 'missing.txt')))
    with pytest.raises(ValueError, match=r'model.templates\[1\]'):
        MODELS.build(zero_shot_cfg(templates=['a {}', 'no place']))
    default = MODELS.build(zero_shot_cfg(templates=None))
    assert len(default.templates) > 1 and all('{}' in t for t in default.templates)


@pytest.mark.parametrize('changes, match', [
    (dict(backbone=dict(type='ResNetV1c', depth=18)), r'model.backbone.type=.ResNetV1c. is not '
     'a CLIP image tower'),
    (dict(backbone=dict(VIT, get_embeddings=False)), r'returns no dense embeddings'),
    (dict(backbone=dict(type='CLIPResNet', layers=(1, 1, 1, 1), width=8)),
     r'CLIPResNet returns no dense embeddings'),
    (dict(class_names=['sky']), r'at least 2'),
    (dict(logit_scale=0), r'model.logit_scale must be positive'),
    (dict(class_names=None), r'model.class_names is not set'),
    (dict(text_encoder=dict(TEXT, embed_dim=64)), r'model.text_encoder.embed_dim=64 disagrees'),
])
def test_clear_errors(changes, match):
    with pytest.raises(ValueError, match=match):
        MODELS.build(zero_shot_cfg(**changes))


def test_clip_archive_is_the_checkpoint(make_clip, save_clip, tmp_path):
    """``init_model`` takes the archive as the checkpoint of a zero-shot config."""
    from mmengine.config import Config

    from denseclip.apis.inference import init_model, takes_clip_archive
    clip = make_clip()
    cfg = Config(dict(model=zero_shot_cfg(data_preprocessor=dict(type='SegDataPreProcessor')),
                      test_pipeline=[]))
    assert takes_clip_archive(cfg)
    assert takes_clip_archive(Config(dict(model=dict(type='SegTTAModel', module=cfg.model))))
    assert not takes_clip_archive(Config(dict(model=dict(type='DenseCLIP'))))
    model = init_model(cfg, save_clip(clip))
    torch.testing.assert_close(model.classifier().weight, classifier_by_hand(clip))
    assert model.dataset_meta['classes'] == NAMES


# ------------------------------------------------------------------ MaskCLIP's dense embeddings
VALUE_RESNET = dict(RESNET, dense_embedding='value')
#: make_clip('resnet')'s shape, as the contrastive CLIP model (tools/train.py) builds it.
CLIP_ARCH = dict(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=8,
                 vision_patch_size=None, context_length=77, vocab_size=49408,
                 transformer_width=32, transformer_heads=2, transformer_layers=1)


def value_dense_by_hand(clip, inputs: torch.Tensor) -> torch.Tensor:
    """MaskCLIP's dense embeddings ``[B, D, h, w]`` from CLIP's own ResNet tower: the attention
    pool's ``c_proj(v_proj(x + pos))`` at every position of C5, nothing mixed between them."""
    pool = clip.visual.attnpool
    with torch.no_grad():
        c5 = clip.visual.forward_stages(inputs)[-1]  # [B, C, h, w]
        batch, channels, height, width = c5.shape
        side = int((pool.positional_embedding.shape[0] - 1) ** 0.5)
        grid = pool.positional_embedding[1:].reshape(1, side, side, channels).permute(0, 3, 1, 2)
        position = F.interpolate(grid, (height, width), mode='bilinear', align_corners=False)
        tokens = (c5 + position).flatten(2).transpose(1, 2)  # [B, hw, C]
        dense = pool.c_proj(pool.v_proj(tokens))  # [B, hw, D]
    return dense.transpose(1, 2).reshape(batch, -1, height, width)


def test_value_path_logits_by_hand(make_clip, save_clip):
    clip = make_clip()
    model = MODELS.build(zero_shot_cfg(VALUE_RESNET, pretrained=save_clip(clip)))
    model.init_weights()
    inputs = torch.randn(2, 3, *IMAGE_SIZE, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits = model.eval()._forward(inputs)
        global_embedding = model.backbone(inputs[:, :, :, :64])[-1][0]
    dense = value_dense_by_hand(clip, inputs)
    expected = 100 * torch.einsum('bdhw,kd->bkhw', F.normalize(dense, dim=1),
                                  classifier_by_hand(clip))
    assert logits.shape == (2, len(NAMES), 2, 3)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    # CLIP's image embedding is unchanged by the choice
    torch.testing.assert_close(global_embedding, clip.encode_image(inputs[:, :, :, :64]),
                               rtol=1e-4, atol=1e-5)
    attention = MODELS.build(zero_shot_cfg(pretrained=save_clip(clip)))
    attention.init_weights()
    with torch.no_grad():
        assert not torch.allclose(attention.eval()._forward(inputs), logits, atol=1e-2)


def test_zero_shot_configs_use_the_value_path():
    from mmengine.config import Config
    paths = sorted((ROOT / 'configs/zero_shot').glob('*.py'))
    assert len(paths) >= 4
    for path in paths:
        assert Config.fromfile(path).model.backbone.dense_embedding == 'value', path.name
    tiny = Config.fromfile(ROOT / 'configs/zero_shot/zero-shot_clip-tiny-r_synthetic-128x128.py')
    tiny.model.class_names = list(NAMES)
    assert MODELS.build(tiny.model).backbone.attnpool.dense == 'value'


def save_like_the_runner(clip, path) -> str:
    """``clip`` as the contrastive CLIP model of ``tools/train.py``, saved as mmengine's runner
    saves a checkpoint: meta, ``clip.``-prefixed state dict, message hub, optimiser state."""
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu

    model = MODELS.build(dict(type='CLIPContrastive', arch=CLIP_ARCH))
    model.clip.load_state_dict(clip.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)  # lr 0: the weights stay
    model.eval().clip.encode_image(torch.randn(1, 3, 64, 64)).sum().backward()  # BN stats kept
    optimizer.step()  # moment buffers in the optimiser state
    hub = MessageHub.get_instance('zero-shot-segmentor-test')
    hub.update_scalar('train/loss', 0.5)
    save_checkpoint(dict(meta=dict(epoch=0, iter=10, seed=0), state_dict=weights_to_cpu(
        model.state_dict()), message_hub=hub.state_dict(), optimizer=optimizer.state_dict()),
        str(path))
    return str(path)


def test_contrastive_clip_checkpoint_loads_like_the_plain_state_dict(make_clip, save_clip,
                                                                     tmp_path):
    """tools/test.py and tools/demo.py (``load_clip_archive`` / ``init_model``) take a
    checkpoint of the contrastive CLIP model as they take CLIP's own weights."""
    from mmengine.config import Config

    from denseclip.apis.inference import init_model, load_clip_archive
    from denseclip.clip import CheckpointError
    clip = make_clip()
    checkpoint = save_like_the_runner(clip, tmp_path / 'iter_10.pth')
    assert 'message_hub' in torch.load(checkpoint, weights_only=False)
    plain = MODELS.build(zero_shot_cfg(VALUE_RESNET, pretrained=save_clip(clip)))
    plain.init_weights()
    trained = MODELS.build(zero_shot_cfg(VALUE_RESNET))  # random weights until loaded
    load_clip_archive(trained, checkpoint)
    assert trained.pretrained == checkpoint
    inputs = torch.randn(1, 3, *IMAGE_SIZE, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        expected = plain.eval()._forward(inputs)
        torch.testing.assert_close(trained.eval()._forward(inputs), expected, rtol=0, atol=0)
        # tools/demo.py's path: init_model with the checkpoint as CHECKPOINT
        cfg = Config(dict(model=zero_shot_cfg(
            VALUE_RESNET, data_preprocessor=dict(type='SegDataPreProcessor')), test_pipeline=[]))
        demo = init_model(cfg, checkpoint)
        torch.testing.assert_close(demo._forward(inputs), expected, rtol=0, atol=0)
    # the same reader takes CLIP's plain state dict (and OpenAI's archives: tests/test_tools)
    archive = MODELS.build(zero_shot_cfg(VALUE_RESNET))
    load_clip_archive(archive, save_clip(clip))
    with torch.no_grad():
        torch.testing.assert_close(archive.eval()._forward(inputs), expected, rtol=0, atol=0)
    # load_clip(path) itself and `pretrained=` (the towers' load_tower) read the runner's
    # checkpoint with the one reader of CLIP weights, as they read `clip.` weights alone
    bare = tmp_path / 'clip_only.pth'
    torch.save({'state_dict': {f'clip.{key}': value for key, value in clip.state_dict().items()}},
               bare)
    for weights in (bare, checkpoint):
        direct = MODELS.build(zero_shot_cfg(VALUE_RESNET))
        direct.load_clip(str(weights))
        assert direct.pretrained == str(weights)
        pretrained = MODELS.build(zero_shot_cfg(VALUE_RESNET, pretrained=str(weights)))
        pretrained.init_weights()
        with torch.no_grad():
            for model in (direct, pretrained):
                torch.testing.assert_close(model.eval()._forward(inputs), expected, rtol=0,
                                           atol=0)
    # a pickle with a global outside the allowlist is still refused, and the hint names the tools
    unsafe = tmp_path / 'unsafe.pth'
    torch.save({'state_dict': torch.load(bare)['state_dict'], 'meta': CheckpointError('no')},
               unsafe)
    with pytest.raises(CheckpointError, match=r'refusing to load.*CHECKPOINT of tools/test.py'):
        direct.load_clip(str(unsafe))


def test_checkpoint_without_clip_weights_is_refused(make_clip, tmp_path):
    from denseclip.apis.inference import load_clip_archive
    from denseclip.clip import CheckpointError
    model = MODELS.build(zero_shot_cfg(VALUE_RESNET))
    segmentor = tmp_path / 'segmentor.pth'
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(4, 3, 3, 3)}}, segmentor)
    with pytest.raises(CheckpointError, match=r"segmentor.pth' holds no CLIP model.*contrastive "
                                              r'CLIP model'):
        load_clip_archive(model, str(segmentor))
    visual_only = {key: value for key, value in make_clip().state_dict().items()
                   if key.startswith('visual.')}
    with pytest.raises(CheckpointError, match=r"'visual only' holds no text tower of a CLIP "
                                              r'model. A zero-shot segmentor'):
        model.load_clip(visual_only, source='visual only')
    vit = make_clip('vit').state_dict()
    with pytest.raises(CheckpointError, match=r'vit.pth does not fit CLIPResNetWithAttention'):
        model.load_clip(vit, source='vit.pth')
