"""Every fast path gives the outputs of the plain path (tiny models from ``conftest.py``).

- batched sliding-window inference (``test_cfg.slide_batch_size``) vs mmseg's crop-by-crop
  ``slide_inference``: edge crops, crops clipped by a small image, batches of images,
  pre-model prompting, the full ``predict`` path;
- the inference-time text cache across batched crops;
- the frozen text encoder under the schedule's optimiser wrapper (``paramwise_cfg``): no
  gradients and no optimiser state for it, gradients into the contexts;
- fused attention (``F.scaled_dot_product_attention``) in every transformer block;
- mixed precision (bfloat16 autocast on CPU) for inference and a training step;
- channels-last weights and ``torch.compile`` of the image path (hooks included).
"""
import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config, ConfigDict
from mmengine.optim import build_optim_wrapper
from mmengine.runner.amp import autocast
from mmseg.models.segmentors import EncoderDecoder

from denseclip.models.context_decoder import Attention
from denseclip.models.slide import batched_slide_inference, slide_windows
from denseclip.engine import (BFloat16OptimWrapper, ChannelsLastHook, CompileSubmodulesHook,
                              enable_amp)

ROOT = Path(__file__).resolve().parents[2]
SCHEDULE = ROOT / 'configs/_base_/schedules/schedule_80k_adamw.py'


def _test_cfg(crop: int, stride: int, slide_batch_size=None) -> ConfigDict:
    cfg = ConfigDict(mode='slide', crop_size=(crop, crop), stride=(stride, stride))
    if slide_batch_size is not None:
        cfg.slide_batch_size = slide_batch_size
    return cfg


def _metas(inputs: torch.Tensor) -> list[dict]:
    shape = tuple(inputs.shape[2:])
    return [dict(img_shape=shape, ori_shape=shape, pad_shape=shape) for _ in inputs]


def _mmseg_slide(model, inputs: torch.Tensor) -> torch.Tensor:
    """mmseg's own crop-by-crop loop, called on the parent class."""
    with torch.no_grad():
        return EncoderDecoder.slide_inference(model, inputs, _metas(inputs))


# ------------------------------------------------------------------ batched slide inference
@pytest.mark.parametrize('image_size, crop, stride', [
    ((96, 160), 64, 48),   # edge crops shifted back to the border, overlapping counts
    ((48, 130), 64, 32),   # image lower than a crop: crops clipped to 48 rows
    ((64, 64), 64, 64),    # a single crop
])
def test_slide_windows_match_mmseg_loop(image_size, crop, stride):
    h_img, w_img = image_size
    expected = []
    h_grids = max(h_img - crop + stride - 1, 0) // stride + 1
    w_grids = max(w_img - crop + stride - 1, 0) // stride + 1
    for h_idx in range(h_grids):  # mmseg's EncoderDecoder.slide_inference, verbatim logic
        for w_idx in range(w_grids):
            y1, x1 = h_idx * stride, w_idx * stride
            y2, x2 = min(y1 + crop, h_img), min(x1 + crop, w_img)
            expected.append((max(y2 - crop, 0), y2, max(x2 - crop, 0), x2))
    windows = slide_windows(image_size, (crop, crop), (stride, stride))
    assert windows == expected
    sizes = {(y2 - y1, x2 - x1) for y1, y2, x1, x2 in windows}
    assert sizes == {(min(crop, h_img), min(crop, w_img))}


def test_batched_slide_places_and_averages_crops_like_mmseg():
    """A stub ``encode_decode`` whose output depends on each crop's content and position: the
    prediction and count maps (edge crops, overlaps) must match mmseg's exactly."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(2, 3, 96, 150, generator=generator)

    class Stub:
        out_channels = 2
        test_cfg = _test_cfg(64, 40)

        def encode_decode(self, crops, metas):
            assert metas[0]['img_shape'] == crops.shape[2:]  # the head resizes to it
            first = crops[:, :1] ** 2
            # plus a per-crop constant (max is exact under any reduction order)
            return torch.cat([first, crops[:, 1:2] + crops[:, 2:].amax(dim=(1, 2, 3),
                                                                       keepdim=True)], dim=1)

    stub = Stub()
    expected = EncoderDecoder.slide_inference(stub, inputs, _metas(inputs))
    for crops_per_batch in (1, 2, 5, 100):
        result = batched_slide_inference(stub, inputs, _metas(inputs), crops_per_batch)
        torch.testing.assert_close(result, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize('image_size, crop, stride', [((96, 160), 64, 48), ((48, 130), 64, 32)])
@pytest.mark.parametrize('crops_per_batch', [1, 3, 64])
def test_batched_slide_equals_mmseg(build_denseclip, image_size, crop, stride, crops_per_batch):
    model = build_denseclip().eval()
    model.test_cfg = _test_cfg(crop, stride)
    inputs = torch.randn(2, 3, *image_size, generator=torch.Generator().manual_seed(2))
    expected = _mmseg_slide(model, inputs)
    model.test_cfg = _test_cfg(crop, stride, crops_per_batch)
    with torch.no_grad():
        result = model.slide_inference(inputs, _metas(inputs))
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-5)
    if crops_per_batch == 1:  # the same forward passes: identical to the bit
        assert torch.equal(result, expected)


def test_batched_slide_with_pre_model_prompting(build_denseclip):
    """Per-image text branches stay with their crop when crops of two images are batched."""
    model = build_denseclip('pre').eval()
    model.test_cfg = _test_cfg(64, 48)
    inputs = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(3))
    expected = _mmseg_slide(model, inputs)
    model.test_cfg = _test_cfg(64, 48, 4)
    with torch.no_grad():
        result = model.slide_inference(inputs, _metas(inputs))
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-5)


def test_batched_slide_through_predict(build_denseclip, batch):
    model = build_denseclip().eval()
    inputs, samples = batch
    model.test_cfg = _test_cfg(48, 32)
    with torch.no_grad():
        expected = model.predict(inputs, copy.deepcopy(samples))
    model.test_cfg = _test_cfg(48, 32, 2)
    with torch.no_grad():
        results = model.predict(inputs, copy.deepcopy(samples))
    for result, reference in zip(results, expected):
        torch.testing.assert_close(result.seg_logits.data, reference.seg_logits.data,
                                   rtol=1e-5, atol=1e-5)
        assert torch.equal(result.pred_sem_seg.data, reference.pred_sem_seg.data)


def test_batched_slide_rejects_a_zero_batch(build_denseclip):
    model = build_denseclip().eval()
    model.test_cfg = _test_cfg(64, 32, 0)
    with pytest.raises(ValueError, match='crops_per_batch'):
        model.slide_inference(torch.zeros(1, 3, 64, 96), _metas(torch.zeros(1, 3, 64, 96)))


# ------------------------------------------------------------------ the text cache
def test_text_encoder_runs_once_for_all_batched_crops(build_denseclip):
    model = build_denseclip().eval()
    calls = []
    model.text_encoder.register_forward_hook(lambda *args: calls.append(1))
    inputs = torch.randn(2, 3, 96, 160, generator=torch.Generator().manual_seed(4))
    model.test_cfg = _test_cfg(64, 32, 3)
    with torch.no_grad():
        cached = model.slide_inference(inputs, _metas(inputs))
        model.slide_inference(inputs, _metas(inputs))
    assert len(calls) == 1
    model.cache_text = False
    with torch.no_grad():
        uncached = model.slide_inference(inputs, _metas(inputs))
    assert len(calls) == 1 + 3  # 2 x 4 crops in batches of 3: one text pass per forward
    torch.testing.assert_close(cached, uncached, rtol=0, atol=0)


# ------------------------------------------------------------------ frozen text encoder
def test_frozen_text_encoder_under_the_schedule_optim_wrapper(build_denseclip, batch):
    """With the paper's AdamW + paramwise_cfg: the text encoder gets no gradients, no optimiser
    state and no update, while gradients flow through it into the learnable contexts."""
    model = build_denseclip().train()
    cfg = Config.fromfile(str(SCHEDULE))
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    inputs, samples = batch
    text_before = {name: p.detach().clone() for name, p in model.text_encoder.named_parameters()}
    contexts_before = model.contexts.detach().clone()

    # train_step's update_params, in its three steps: backward, step, zero_grad
    loss, _ = model.parse_losses(model.loss(inputs, copy.deepcopy(samples)))
    optim_wrapper.backward(loss)
    text_params = list(model.text_encoder.parameters())
    assert text_params and all(not p.requires_grad and p.grad is None for p in text_params)
    assert model.contexts.grad is not None and model.contexts.grad.abs().sum() > 0
    optim_wrapper.step()
    optim_wrapper.zero_grad()
    state = optim_wrapper.optimizer.state
    assert not any(p in state for p in text_params)
    assert model.contexts in state
    assert not torch.equal(model.contexts.detach(), contexts_before)
    for name, param in model.text_encoder.named_parameters():
        assert torch.equal(param, text_before[name]), name
    # the schedule's lr multipliers: backbone x0.1, the rest x1
    lrs = {id(p): group['lr'] for group in optim_wrapper.optimizer.param_groups
           for p in group['params']}
    base_lr = cfg.optim_wrapper.optimizer.lr
    assert lrs[id(model.backbone.conv1.weight)] == pytest.approx(0.1 * base_lr)
    assert lrs[id(model.contexts)] == pytest.approx(base_lr)


# ------------------------------------------------------------------ fused attention
def test_every_attention_runs_on_the_fused_kernel(build_denseclip, batch, monkeypatch):
    """No ``nn.MultiheadAttention``/explicit softmax attention left: each attention module of
    the text encoder, the attention pool and the context decoder calls SDPA once."""
    model = build_denseclip().eval()
    model.cache_text = False
    assert not any(isinstance(m, torch.nn.MultiheadAttention) for m in model.modules())
    calls = []
    sdpa = F.scaled_dot_product_attention

    def counting_sdpa(*args, **kwargs):
        calls.append(args[0].shape)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, 'scaled_dot_product_attention', counting_sdpa)
    monkeypatch.setattr(torch.Tensor, 'softmax', lambda *a, **k: pytest.fail('softmax'))
    with torch.no_grad():
        model.encode_decode(batch[0], _metas(batch[0]))
    text_layers = model.text_encoder.transformer.layers
    decoder_layers = len(model.context_decoder.decoder)
    assert len(calls) == text_layers + 1 + 2 * decoder_layers


def test_context_decoder_attention_equals_explicit_softmax():
    torch.manual_seed(0)
    attention = Attention(width=16, heads=4).eval()
    q, kv = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    with torch.no_grad():
        fused = attention(q, kv, kv)

        def heads(x):  # [B, L, C] -> [B, h, L, C/h]
            return x.unflatten(-1, (4, -1)).transpose(1, 2)

        weights = (heads(attention.q_proj(q)) @ heads(attention.k_proj(kv)).transpose(-2, -1)
                   * 4 ** -0.5).softmax(dim=-1)
        explicit = attention.proj((weights @ heads(attention.v_proj(kv))).transpose(1, 2)
                                  .flatten(2))
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ mixed precision
def test_bf16_autocast_inference_is_close_to_fp32(build_denseclip, batch):
    model = build_denseclip().eval()
    inputs = batch[0]
    with torch.no_grad():
        reference = model.encode_decode(inputs, _metas(inputs))
        with autocast(device_type='cpu', dtype=torch.bfloat16):
            mixed = model.encode_decode(inputs, _metas(inputs))
    assert mixed.dtype == torch.bfloat16  # the convolutions really ran in bfloat16
    error = (mixed.float() - reference).abs().max() / reference.abs().max()
    assert error < 0.05
    assert (mixed.float().argmax(1) == reference.argmax(1)).float().mean() > 0.9


def test_amp_training_step_through_the_optim_wrapper(build_denseclip, batch):
    """``tools/train.py --amp``'s wrapper: fp16 AmpOptimWrapper on GPUs, bfloat16 autocast
    without loss scaling on CPUs; master weights stay float32."""
    model = build_denseclip().train()
    cfg = Config.fromfile(str(SCHEDULE))
    enable_amp(cfg)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    if not torch.cuda.is_available():
        assert isinstance(optim_wrapper, BFloat16OptimWrapper)
    before = model.decode_head.conv_seg.weight.detach().clone()
    losses = model.train_step(dict(inputs=batch[0], data_samples=batch[1]), optim_wrapper)
    assert all(torch.isfinite(value) for value in losses.values())
    assert model.decode_head.conv_seg.weight.dtype == torch.float32
    assert not torch.equal(before, model.decode_head.conv_seg.weight)


# ------------------------------------------------------------------ channels-last, compile
def test_channels_last_gives_the_same_logits_and_gradients(build_denseclip, batch):
    inputs, samples = batch
    model = build_denseclip().eval()
    with torch.no_grad():
        reference = model.encode_decode(inputs, _metas(inputs))
    runner = SimpleNamespace(model=model)
    ChannelsLastHook().before_run(runner)
    assert model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        result = model.encode_decode(inputs, _metas(inputs))
    torch.testing.assert_close(result, reference, rtol=1e-4, atol=1e-5)

    def grads(model):
        model.train().zero_grad()
        loss = sum(v for k, v in model.loss(inputs, copy.deepcopy(samples)).items()
                   if 'loss' in k)
        loss.backward()
        return model.backbone.conv1.weight.grad.clone()

    plain = build_denseclip().train()  # same seed: same weights
    torch.testing.assert_close(grads(model), grads(plain), rtol=1e-3, atol=1e-5)


def test_compile_hook_keeps_the_outputs(build_denseclip, batch):
    """``torch.compile`` of backbone, neck and head (the ``eager`` backend: the graph capture
    without code generation, which takes minutes on a CPU)."""
    inputs = batch[0]
    model = build_denseclip().eval()
    with torch.no_grad():
        reference = model.encode_decode(inputs, _metas(inputs))
    torch._dynamo.reset()
    CompileSubmodulesHook(backend='eager').before_run(SimpleNamespace(model=model))
    assert set(model.state_dict()) == set(build_denseclip().state_dict())  # keys unchanged
    with torch.no_grad():
        result = model.encode_decode(inputs, _metas(inputs))
    torch.testing.assert_close(result, reference, rtol=1e-5, atol=1e-6)
