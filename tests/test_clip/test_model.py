"""The CLIP model: OpenAI's exact state dict layout, zero-shot logits and the contrastive loss."""
import math

import pytest
import torch

from denseclip.clip import CLIP, contrastive_loss, tokenize

from .tiny import TINY_RN

#: int64 scalars stored in OpenAI's archives next to the weights; the model has no such tensors.
ARCHIVE_ONLY = {'input_resolution', 'context_length', 'vocab_size'}

TEXT_CONFIG = dict(context_length=77, vocab_size=49408, transformer_width=512,
                   transformer_heads=8, transformer_layers=12)
FULL_SIZE = {
    'RN50': dict(embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3),
                 vision_width=64, vision_patch_size=None, **TEXT_CONFIG),
    'ViT-B-16': dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                     vision_patch_size=16, **TEXT_CONFIG),
}


@pytest.mark.parametrize('name', FULL_SIZE)
def test_state_dict_matches_openai_archive(name, reference_keys):
    expected = reference_keys(f'openai_clip_{name}')
    assert ARCHIVE_ONLY <= set(expected)
    expected = {key: value for key, value in expected.items() if key not in ARCHIVE_ONLY}
    model = CLIP(**FULL_SIZE[name])
    ours = {key: (tuple(value.shape), str(value.dtype).replace('torch.', ''))
            for key, value in model.state_dict().items()}
    assert sorted(set(ours) - set(expected)) == []
    assert sorted(set(expected) - set(ours)) == []
    assert {key: ours[key] for key in ours if ours[key] != expected[key]} == {}


def test_builds_on_meta_device():
    """Full-size models can be inspected without allocating memory (e.g. for FLOP counts)."""
    with torch.device('meta'):
        model = CLIP(**TINY_RN)
    assert model.text_projection.is_meta
    assert model.visual.attnpool.positional_embedding.shape == (5, 256)


@pytest.fixture(scope='module')
def batch():
    torch.manual_seed(0)
    return torch.randn(2, 3, 64, 64), tokenize(['a photo of a cat', 'a dog', 'a diagram'])


def test_zero_shot_logits(tiny_clip, batch):
    image, text = batch
    with torch.no_grad():
        tiny_clip.logit_scale.fill_(math.log(20.0))
        logits_per_image, logits_per_text = tiny_clip(image, text)
        image_features = tiny_clip.encode_image(image)
        text_features = tiny_clip.encode_text(text)
    assert image_features.shape == (2, 32) and text_features.shape == (3, 32)
    assert logits_per_image.shape == (2, 3)
    assert torch.equal(logits_per_text, logits_per_image.t())
    cosine = torch.tensor([[float(torch.dot(i, t) / (i.norm() * t.norm()))
                            for t in text_features] for i in image_features])
    torch.testing.assert_close(logits_per_image, 20.0 * cosine, rtol=1e-5, atol=1e-5)
    assert logits_per_image.abs().max() <= 20.0 + 1e-4


def test_dtype_follows_the_weights(tiny_clip, batch):
    assert tiny_clip.dtype == torch.float32
    image, _ = batch
    tiny_clip.double()
    assert tiny_clip.dtype == torch.float64
    assert tiny_clip.encode_image(image).dtype == torch.float64  # fp32 input cast to the model


def test_contrastive_loss_golden_value():
    # identity logits: each row/column is softmax([1, 0]) -> -log(e / (e + 1)) = log(1 + 1/e)
    loss = contrastive_loss(torch.eye(2))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    # rows and columns differ here; the loss is their mean
    logits = torch.tensor([[2.0, 0.0], [1.0, 0.0]])
    rows = (-math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(1 / (math.exp(1) + 1))) / 2
    cols = (-math.log(math.exp(2) / (math.exp(2) + math.exp(1))) - math.log(1 / 2)) / 2
    assert contrastive_loss(logits).item() == pytest.approx((rows + cols) / 2, rel=1e-6)


def test_contrastive_loss_is_symmetric_and_matches_hand_computation():
    torch.manual_seed(0)
    logits = torch.randn(5, 5) * 3
    loss = contrastive_loss(logits)
    torch.testing.assert_close(loss, contrastive_loss(logits.t()))
    diagonal = logits.diagonal()
    by_rows = (torch.logsumexp(logits, dim=1) - diagonal).mean()
    by_columns = (torch.logsumexp(logits, dim=0) - diagonal).mean()
    torch.testing.assert_close(loss, (by_rows + by_columns) / 2)
    assert loss.ndim == 0


@pytest.mark.parametrize('shape', [(2, 3), (4,), (2, 2, 2)])
def test_contrastive_loss_rejects_non_square(shape):
    with pytest.raises(ValueError, match='square'):
        contrastive_loss(torch.zeros(shape))


def test_contrastive_loss_trains_both_towers(tiny_clip, batch):
    image, text = batch
    tiny_clip.train()
    logits_per_image, _ = tiny_clip(image, text[:2])
    contrastive_loss(logits_per_image).backward()
    grads = {name: p.grad for name, p in tiny_clip.named_parameters()}
    for name in ('logit_scale', 'text_projection', 'token_embedding.weight',
                 'transformer.resblocks.0.attn.in_proj_weight', 'visual.conv1.weight'):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    image_side = [name for name in grads if name.startswith('visual.')]
    assert image_side and [name for name in image_side if grads[name] is None] == []


def test_image_towers_accept_non_square_images(tiny_clip):
    torch.manual_seed(0)
    assert tiny_clip.encode_image(torch.randn(1, 3, 64, 96)).shape == (1, 32)
