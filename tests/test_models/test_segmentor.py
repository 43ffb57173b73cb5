"""Tests of the DenseCLIP segmentor on tiny configurations (see ``conftest.py``).

Covers the losses and their gradients, the score map and the auxiliary pixel-text loss against
hand computations, whole/slide inference, the inference-time text cache, state-dict round
trips, every prompting variant, any-backbone DenseCLIP, the widths derived from the backbone and
the text encoder, and the configuration errors.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmseg.registry import MODELS

from denseclip.clip import tokenize
from denseclip.models import DenseCLIP

NAMES = ('wall', 'building', 'sky', 'floor')  # as in conftest.CLASS_NAMES
K = len(NAMES)
SLIDE = dict(mode='slide', crop_size=(64, 64), stride=(32, 32))
LOSS_KEYS = {'decode.loss_ce', 'decode.acc_seg', 'identity.loss_ce', 'identity.acc_seg'}


def _logits(model, inputs, samples=None) -> torch.Tensor:
    with torch.no_grad():
        results = model.predict(inputs, copy.deepcopy(samples))
    return torch.stack([result.seg_logits.data for result in results])


def _count_calls(module: torch.nn.Module) -> list:
    calls = []
    module.register_forward_hook(lambda *args: calls.append(1))
    return calls


def _total(losses: dict) -> torch.Tensor:
    return sum(value for key, value in losses.items() if 'loss' in key)


# ------------------------------------------------------------------ training
def test_loss_keys_and_gradients(build_denseclip, batch):
    model = build_denseclip().train()
    assert isinstance(model, DenseCLIP)
    inputs, samples = batch
    losses = model.loss(inputs, samples)
    assert set(losses) == LOSS_KEYS
    assert all(torch.isfinite(value).all() for value in losses.values())
    _total(losses).backward()

    def grad_of(name):
        return dict(model.named_parameters())[name].grad

    for name in ['contexts', 'gamma', 'context_decoder.out_proj.1.weight',
                 'context_decoder.memory_proj.1.weight', 'backbone.conv1.weight',
                 'backbone.attnpool.c_proj.weight', 'neck.lateral_convs.3.conv.weight',
                 'decode_head.conv_seg.weight']:
        assert grad_of(name) is not None and grad_of(name).abs().sum() > 0, name
    text_params = list(model.text_encoder.parameters())
    assert text_params and all(not p.requires_grad and p.grad is None for p in text_params)


def test_identity_loss_matches_hand_computation(build_denseclip, batch):
    model = build_denseclip().train()
    inputs, samples = batch
    torch.manual_seed(0)
    losses = model.loss(inputs, samples)
    torch.manual_seed(0)
    score_map = model.forward_features(inputs)[2]  # [B, K, h, w]
    assert score_map.shape == (2, K, 2, 3)
    labels = torch.stack([sample.gt_sem_seg.data[0] for sample in samples])  # [B, H, W]
    logits = F.interpolate(score_map / 0.07, size=labels.shape[1:], mode='bilinear',
                           align_corners=False)
    # mmseg's mean over all pixels (ignored ones count as 0), times the weight 0.4
    expected = 0.4 * F.cross_entropy(logits, labels, ignore_index=255, reduction='none').mean()
    torch.testing.assert_close(losses['identity.loss_ce'], expected)
    valid = labels != 255
    accuracy = (logits.argmax(dim=1) == labels)[valid].float().mean() * 100
    torch.testing.assert_close(losses['identity.acc_seg'].reshape(()), accuracy)


def test_forward_features_score_map_and_concat(build_denseclip, batch):
    model = build_denseclip().eval()
    inputs, _ = batch
    assert torch.equal(model.texts, tokenize(list(NAMES), 5))
    with torch.no_grad():
        features, text, score_map = model.forward_features(inputs)
        *maps, (global_embedding, dense) = model.backbone(inputs)
        expected_text = model.text_encoder(model.texts, model.contexts).expand(2, -1, -1)
        visual = torch.cat([global_embedding[:, None], dense.flatten(2).transpose(1, 2)], dim=1)
        expected_text = expected_text + model.gamma * model.context_decoder(expected_text,
                                                                            visual)
    assert text.shape == (2, K, 32)
    torch.testing.assert_close(text, expected_text)
    unit_dense = dense / dense.norm(dim=1, keepdim=True)
    unit_text = expected_text / expected_text.norm(dim=-1, keepdim=True)
    expected_score = torch.einsum('bchw,bkc->bkhw', unit_dense, unit_text)
    torch.testing.assert_close(score_map, expected_score)
    assert score_map.abs().max() <= 1 + 1e-6
    assert len(features) == 4
    for level in range(3):
        assert torch.equal(features[level], maps[level])
    assert features[3].shape == (2, 256 + K, 2, 3)
    assert torch.equal(features[3][:, :256], maps[3])
    assert torch.equal(features[3][:, 256:], score_map)


def test_auxiliary_head_loss(build_denseclip, batch):
    aux = dict(type='FCNHead', in_channels=16, channels=8, in_index=2, num_convs=1,
               concat_input=False, num_classes=K, norm_cfg=dict(type='BN'),
               loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4))
    model = build_denseclip(auxiliary_head=aux).train()
    inputs, samples = batch
    losses = model.loss(inputs, samples)
    assert set(losses) == LOSS_KEYS | {'aux.loss_ce', 'aux.acc_seg'}
    _total(losses).backward()
    assert model.auxiliary_head.conv_seg.weight.grad.abs().sum() > 0


def test_auxiliary_head_num_classes_is_derived(build_denseclip, batch):
    """Like the decode head's, the auxiliary heads' class count follows from the class names."""
    aux = dict(type='FCNHead', in_channels=16, channels=8, in_index=2, num_convs=1,
               concat_input=False, norm_cfg=dict(type='BN'))
    assert build_denseclip(auxiliary_head=aux).auxiliary_head.num_classes == K
    model = build_denseclip(auxiliary_head=[aux, dict(aux, in_index=3)]).train()
    assert [head.num_classes for head in model.auxiliary_head] == [K, K]
    inputs, samples = batch
    losses = model.loss(inputs, samples)
    assert {'aux_0.loss_ce', 'aux_1.loss_ce'} <= set(losses)


# ------------------------------------------------------------------ inference
def test_predict_whole(build_denseclip, batch):
    model = build_denseclip().eval()
    inputs, samples = batch
    with torch.no_grad():
        results = model.predict(inputs, samples)
        expected = model.encode_decode(inputs, [sample.metainfo for sample in samples])
    assert len(results) == 2
    for index, result in enumerate(results):
        assert result.seg_logits.data.shape == (K, 64, 96)
        assert result.pred_sem_seg.data.shape == (1, 64, 96)
        torch.testing.assert_close(result.seg_logits.data, expected[index])
        assert torch.equal(result.pred_sem_seg.data[0], expected[index].argmax(dim=0))
    assert torch.equal(_logits(model, inputs), torch.stack(
        [result.seg_logits.data for result in results]))  # without data samples too


def test_predict_slide_averages_the_crops(build_denseclip, batch):
    model = build_denseclip(test_cfg=SLIDE).eval()
    inputs, samples = batch
    logits = _logits(model, inputs, samples)
    assert logits.shape == (2, K, 64, 96)
    # as mmseg's slide inference: a crop's img_shape is a torch.Size (it wins over pad_shape)
    metas = [dict(img_shape=torch.Size((64, 64)), ori_shape=(64, 96), pad_shape=(64, 96))] * 2
    with torch.no_grad():
        left = model.encode_decode(inputs[..., :64], metas)
        right = model.encode_decode(inputs[..., 32:], metas)
    total = torch.zeros(2, K, 64, 96)
    count = torch.zeros(1, 1, 64, 96)
    total[..., :64] += left
    total[..., 32:] += right
    count[..., :64] += 1
    count[..., 32:] += 1
    torch.testing.assert_close(logits, total / count)


# ------------------------------------------------------------------ the text cache
@pytest.mark.parametrize('test_cfg', [dict(mode='whole'), SLIDE])
def test_cached_and_uncached_text_give_identical_logits(build_denseclip, batch, test_cfg):
    model = build_denseclip(test_cfg=test_cfg).eval()
    inputs, samples = batch
    cached = _logits(model, inputs, samples)
    model.cache_text = False
    assert torch.equal(cached, _logits(model, inputs, samples))


def test_text_encoder_runs_once_when_cached(build_denseclip, batch):
    model = build_denseclip(test_cfg=SLIDE).eval()
    inputs, samples = batch
    calls = _count_calls(model.text_encoder)
    for _ in range(3):
        _logits(model, inputs, samples)  # 2 crops each
    model.test_cfg = ConfigDict(mode='whole')
    _logits(model, inputs, samples)
    assert len(calls) == 1
    model.test_cfg = ConfigDict(SLIDE)
    model.cache_text = False
    _logits(model, inputs, samples)
    assert len(calls) == 1 + 2  # once per crop without the cache


def test_training_does_not_use_the_cache(build_denseclip, batch):
    model = build_denseclip().eval()
    inputs, samples = batch
    calls = _count_calls(model.text_encoder)
    _logits(model, inputs)
    model.train()
    model.loss(inputs, samples)
    model.loss(inputs, samples)
    assert len(calls) == 3


def _assert_cache_is_fresh(model, inputs, before):
    cached = _logits(model, inputs)
    model.cache_text = False
    fresh = _logits(model, inputs)
    model.cache_text = True
    assert torch.equal(cached, fresh)
    assert not torch.allclose(cached, before)


def test_cache_follows_an_optimizer_step_on_the_contexts(build_denseclip, batch):
    model = build_denseclip().eval()
    inputs, _ = batch
    before = _logits(model, inputs)
    optimizer = torch.optim.SGD([model.contexts], lr=1.0)
    model.contexts.grad = torch.randn_like(model.contexts)
    optimizer.step()
    _assert_cache_is_fresh(model, inputs, before)


def test_cache_follows_a_training_step(build_denseclip, batch):
    model = build_denseclip().eval()
    inputs, samples = batch
    before = _logits(model, inputs)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    _total(model.loss(inputs, samples)).backward()
    optimizer.step()
    model.eval()
    _assert_cache_is_fresh(model, inputs, before)


@pytest.mark.parametrize('key', ['contexts', 'text_encoder.ln_final.bias',
                                 'text_encoder.positional_embedding'])
def test_cache_follows_load_state_dict(build_denseclip, batch, key):
    model = build_denseclip().eval()
    inputs, _ = batch
    before = _logits(model, inputs)
    state = model.state_dict()
    state[key] = state[key] + 0.5
    model.load_state_dict(state)
    _assert_cache_is_fresh(model, inputs, before)


def test_cache_follows_a_dtype_change(build_denseclip, batch):
    """``model.double()`` (or ``.half()``) after inference must not reuse float32 text."""
    model = build_denseclip().eval()
    inputs, _ = batch
    _logits(model, inputs)
    model.double()
    cached = _logits(model, inputs.double())
    model.cache_text = False
    fresh = _logits(model, inputs.double())
    assert cached.dtype == torch.float64
    assert torch.equal(cached, fresh)


def test_state_dict_round_trip(build_denseclip, batch):
    model = build_denseclip(seed=0).eval()
    inputs, samples = batch
    expected = _logits(model, inputs, samples)
    state = model.state_dict()
    assert 'texts' not in state  # derived from the class names, not stored
    assert not any(key.startswith('identity_head') for key in state)
    assert {'contexts', 'gamma'} <= set(state)
    other = build_denseclip(seed=1).eval()
    _logits(other, inputs)  # give it a cache of its own first
    other.load_state_dict(state)
    assert torch.equal(_logits(other, inputs, samples), expected)


# ------------------------------------------------------------------ variants
@pytest.mark.parametrize('prompting', ['none', 'pre', 'post', 'pre+post'])
def test_prompting_variants(build_denseclip, batch, prompting):
    model = build_denseclip(prompting).train()
    inputs, samples = batch
    params = dict(model.named_parameters())
    assert ('contexts' in params) == ('pre' not in prompting)
    assert ('gamma' in params) == ('post' in prompting)
    assert (model.context_decoder is not None) == ('post' in prompting)
    assert (model.pre_prompter is not None) == ('pre' in prompting)
    losses = model.loss(inputs, samples)
    assert set(losses) == LOSS_KEYS
    _total(losses).backward()
    trained = {'none': ['contexts'], 'pre': ['pre_prompter.queries'],
               'post': ['contexts', 'gamma'], 'pre+post': ['pre_prompter.queries', 'gamma']}
    for name in trained[prompting] + ['backbone.conv1.weight', 'decode_head.conv_seg.weight']:
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name
    if 'pre' in prompting:
        decoder = params['pre_prompter.decoder.out_proj.1.weight']
        assert decoder.grad is not None and decoder.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.text_encoder.parameters())

    model.eval()
    logits = _logits(model, inputs, samples)
    assert logits.shape == (2, K, 64, 96)
    model.cache_text = False
    torch.testing.assert_close(_logits(model, inputs, samples), logits)


def test_pre_model_prompting_runs_the_text_encoder_per_image(build_denseclip, batch):
    model = build_denseclip('pre').eval()
    inputs, _ = batch
    with torch.no_grad():
        text = model.forward_features(inputs)[1]
        visual_context = torch.cat([
            model.backbone(inputs)[-1][0][:, None],
            model.backbone(inputs)[-1][1].flatten(2).transpose(1, 2)], dim=1)
        expected = model.text_encoder(model.texts, model.pre_prompter(visual_context))
    assert text.shape == (2, K, 32)
    torch.testing.assert_close(text, expected)
    assert not torch.allclose(text[0], text[1])
    calls = _count_calls(model.text_encoder)
    _logits(model, inputs)
    _logits(model, inputs)
    assert len(calls) == 2


def test_any_backbone(build_denseclip, batch):
    backbone = dict(type='BackboneWithAttentionPool',
                    backbone=dict(type='ResNet', depth=18, stem_channels=16, base_channels=8),
                    in_channels=64, output_dim=32, num_heads=2, spacial_dim=2)
    neck = dict(type='FPN', in_channels=[8, 16, 32, 64], out_channels=16, num_outs=4)
    model = build_denseclip(backbone=backbone, neck=neck).train()
    assert model.neck.lateral_convs[3].conv.in_channels == 64 + K
    inputs, samples = batch
    losses = model.loss(inputs, samples)
    assert set(losses) == LOSS_KEYS
    _total(losses).backward()
    assert model.backbone.attnpool.c_proj.weight.grad.abs().sum() > 0
    assert model.backbone.backbone.conv1.weight.grad.abs().sum() > 0
    model.eval()
    assert _logits(model, inputs, samples).shape == (2, K, 64, 96)


def test_vit_denseclip(build_denseclip, batch):
    backbone = dict(type='CLIPVisionTransformer', input_resolution=64, patch_size=16, width=64,
                    layers=4, heads=2, output_dim=32, out_indices=(0, 1, 2, 3),
                    get_embeddings=True)
    neck = dict(type='FPN', in_channels=[64] * 4, out_channels=16, num_outs=4)
    model = build_denseclip(backbone=backbone, neck=neck, score_concat_index=2).train()
    assert [conv.conv.in_channels for conv in model.neck.lateral_convs] == [64, 64, 64 + K, 64]
    inputs, samples = batch
    losses = model.loss(inputs, samples)
    assert set(losses) == LOSS_KEYS
    model.eval()
    with torch.no_grad():
        features, _, score_map = model.forward_features(inputs)
    assert score_map.shape == (2, K, 4, 6)  # 1/16
    assert features[2].shape == (2, 64 + K, 4, 6)
    assert _logits(model, inputs, samples).shape == (2, K, 64, 96)


# ------------------------------------------------------------------ derived values
@pytest.mark.parametrize('index', [0, 1, 2, 3])
def test_score_channels_are_added_to_the_neck(denseclip_cfg, index):
    model = MODELS.build(denseclip_cfg(score_concat_index=index))
    channels = [conv.conv.in_channels for conv in model.neck.lateral_convs]
    expected = [32, 64, 128, 256]
    expected[index] += K
    assert channels == expected
    assert model.decode_head.num_classes == model.identity_head.num_classes == K
    assert model.class_names == NAMES


def test_score_channels_go_to_the_head_without_a_neck(build_denseclip, batch):
    head = dict(type='FPNHead', in_channels=[32, 64, 128, 256], in_index=[0, 1, 2, 3],
                feature_strides=[4, 8, 16, 32], channels=16, dropout_ratio=0.0,
                norm_cfg=dict(type='BN'), align_corners=False)
    model = build_denseclip(neck=None, decode_head=head).train()
    assert [scale[0].conv.in_channels for scale in model.decode_head.scale_heads] == [
        32, 64, 128, 256 + K]
    inputs, samples = batch
    assert set(model.loss(inputs, samples)) == LOSS_KEYS
    assert _logits(model.eval(), inputs).shape == (2, K, 64, 96)


def test_config_is_not_modified(denseclip_cfg):
    cfg = denseclip_cfg()
    frozen = copy.deepcopy(cfg)
    MODELS.build(cfg)
    assert cfg == frozen


def test_init_weights_loads_both_clip_towers(denseclip_cfg, make_clip, save_clip):
    clip = make_clip('resnet')
    model = MODELS.build(denseclip_cfg(pretrained=save_clip(clip)))
    model.init_weights()
    visual = clip.visual.state_dict()
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, visual[key]), key
    assert torch.equal(model.text_encoder.token_embedding.weight, clip.token_embedding.weight)
    assert torch.equal(model.text_encoder.positional_embedding, clip.positional_embedding[:9])
    assert torch.equal(model.text_encoder.text_projection, clip.text_projection)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize('changes, error, match', [
    (dict(class_names=None), ValueError, 'class_names'),
    (dict(class_names=[]), ValueError, 'empty'),
    (dict(class_names='wall'), TypeError, 'class_names'),
    (dict(class_names=['wall', 'a very long name of a class']), ValueError,
     'a very long name of a class'),
    (dict(decode_head=dict(type='FPNHead', in_channels=[16] * 4, in_index=[0, 1, 2, 3],
                           feature_strides=[4, 8, 16, 32], channels=16, num_classes=150)),
     ValueError, 'num_classes=150'),
    (dict(identity_head=dict(type='IdentityHead', num_classes=3)), ValueError,
     'num_classes=3'),
    (dict(auxiliary_head=dict(type='FCNHead', in_channels=16, channels=8, num_classes=3)),
     ValueError, 'num_classes=3'),
    (dict(score_concat_index=4), ValueError, 'score_concat_index=4'),
    (dict(score_concat_index=-1), ValueError, 'score_concat_index=-1'),
    (dict(prompting='middle'), ValueError, 'middle'),
    (dict(prompting='pre', pre_prompter=None), ValueError, 'pre_prompter'),
    (dict(prompting='post', context_decoder=None), ValueError, 'context_decoder'),
    (dict(context_length=10), ValueError, 'context_length'),
    (dict(pretrained='pretrained/RN50.pt',
          backbone=dict(type='BackboneWithAttentionPool',
                        backbone=dict(type='ResNet', depth=18), in_channels=512,
                        output_dim=32)), ValueError, 'not a CLIP backbone'),
])
def test_configuration_errors(denseclip_cfg, changes, error, match):
    with pytest.raises(error, match=match):
        MODELS.build(denseclip_cfg(**changes))
