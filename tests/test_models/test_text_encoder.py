"""Tests of the text encoder, CLIPTextContextEncoder: with learnable contexts (``forward``) and
without (``encode_text``, CLIP's fixed prompts).

References: the parent ``TextTransformer.encode_embeddings`` on sequences built by hand, and a
tiny CLIP with 77 positions sharing the weights (causal attention: the positions after the
end-of-text token cannot change its output, so 9 and 77 positions must agree).
"""
import pytest
import torch
from mmseg.registry import MODELS

from denseclip.clip import tokenize
from denseclip.clip.text import TextTransformer
from denseclip.models import CLIPTextContextEncoder

NAMES = ['wall', 'building', 'sky', 'floor', 'traffic light']
TEXT = dict(transformer_width=32, transformer_heads=2, transformer_layers=1, embed_dim=32)
NAME_LENGTH = 5
ATOL = 1e-5


def _encoder(randomize, context_length: int = 9, **kwargs) -> CLIPTextContextEncoder:
    torch.manual_seed(0)
    encoder = MODELS.build(dict(type='CLIPTextContextEncoder', context_length=context_length,
                                **TEXT, **kwargs))
    assert isinstance(encoder, CLIPTextContextEncoder)
    return randomize(encoder).eval()


def _with_weights_of(encoder: torch.nn.Module, clip: torch.nn.Module) -> torch.nn.Module:
    """Copies CLIP's text tower into ``encoder`` (positions truncated by hand)."""
    state = {key: value for key, value in clip.state_dict().items()
             if not key.startswith('visual.') and key != 'logit_scale'}
    state['positional_embedding'] = state['positional_embedding'][:encoder.context_length]
    encoder.load_state_dict(state)
    return encoder


def _by_hand(encoder: CLIPTextContextEncoder, text: torch.Tensor,
             context: torch.Tensor) -> torch.Tensor:
    """``[SOS][ctx][name tokens]`` per (image, class), one sequence at a time -> ``[B, K, D]``."""
    num_contexts = context.shape[1]
    rows = []
    for image_context in context:  # [M, C]
        row = []
        for tokens in text:  # [N]
            embedded = encoder.token_embedding(tokens)
            sequence = torch.cat([embedded[:1], image_context, embedded[1:]])[None]
            eot = tokens.argmax()[None] + num_contexts
            row.append(TextTransformer.encode_embeddings(encoder, sequence, eot)[0])
        rows.append(torch.stack(row))
    return torch.stack(rows)


def test_shared_and_per_image_contexts_shapes_and_values(randomize):
    encoder = _encoder(randomize)
    text = tokenize(NAMES, NAME_LENGTH)
    shared = torch.randn(1, 4, 32)
    per_image = torch.randn(3, 4, 32)
    with torch.no_grad():
        out_shared = encoder(text, shared)
        out_per_image = encoder(text, per_image)
        assert out_shared.shape == (1, len(NAMES), 32)
        assert out_per_image.shape == (3, len(NAMES), 32)
        torch.testing.assert_close(out_shared, _by_hand(encoder, text, shared), atol=ATOL,
                                   rtol=1e-4)
        torch.testing.assert_close(out_per_image, _by_hand(encoder, text, per_image),
                                   atol=ATOL, rtol=1e-4)
        # each image's classes depend on that image's contexts only
        torch.testing.assert_close(out_per_image[1], encoder(text, per_image[1:2])[0],
                                   atol=ATOL, rtol=1e-4)
    assert not torch.allclose(out_per_image[0], out_per_image[1])


def test_contexts_match_clip_with_77_positions(make_clip, randomize):
    """The same sequence padded to CLIP's 77 positions gives the same embedding."""
    clip = make_clip('resnet')
    encoder = _with_weights_of(_encoder(randomize), clip)
    text = tokenize(NAMES, NAME_LENGTH)
    context = torch.randn(2, 4, 32)
    with torch.no_grad():
        out = encoder(text, context)
        for image in range(2):
            long = tokenize(NAMES, 77 - 4)
            embedded = clip.token_embedding(long)  # [K, 73, C]
            sequence = torch.cat([embedded[:, :1], context[image].expand(len(NAMES), -1, -1),
                                  embedded[:, 1:]], dim=1)  # [K, 77, C]
            expected = clip.encode_embeddings(sequence, long.argmax(dim=-1) + 4)
            torch.testing.assert_close(out[image], expected, atol=ATOL, rtol=1e-4)


def test_without_contexts_equals_clip_encode_text(make_clip, randomize):
    clip = make_clip('resnet')
    encoder = _with_weights_of(_encoder(randomize, context_length=NAME_LENGTH), clip)
    text = tokenize(NAMES, NAME_LENGTH)
    with torch.no_grad():
        out = encoder(text, torch.empty(1, 0, 32))
        assert out.shape == (1, len(NAMES), 32)
        torch.testing.assert_close(out[0], encoder.encode_text(text), atol=ATOL, rtol=1e-4)
        torch.testing.assert_close(out[0], clip.encode_text(tokenize(NAMES)), atol=ATOL,
                                   rtol=1e-4)


def test_frozen_encoder_passes_gradients_to_contexts(randomize):
    encoder = _encoder(randomize)
    assert all(not p.requires_grad for p in encoder.parameters())
    context = torch.randn(2, 4, 32, requires_grad=True)
    encoder(tokenize(NAMES, NAME_LENGTH), context).square().sum().backward()
    assert context.grad is not None and context.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.parameters())


def test_unfrozen_encoder_trains():
    encoder = CLIPTextContextEncoder(context_length=9, frozen=False, **TEXT)
    assert all(p.requires_grad for p in encoder.parameters())
    encoder(tokenize(NAMES, NAME_LENGTH), torch.randn(1, 4, 32)).sum().backward()
    assert encoder.token_embedding.weight.grad is not None
    assert encoder.positional_embedding.grad.abs().sum() > 0


@pytest.mark.parametrize('name_length, num_contexts', [(5, 3), (5, 5), (4, 4)])
def test_length_mismatch_raises(randomize, name_length, num_contexts):
    encoder = _encoder(randomize)
    with pytest.raises(ValueError, match='context_length 9'):
        encoder(tokenize(NAMES, name_length), torch.randn(1, num_contexts, 32))


def test_fixed_prompts_equal_clip_encode_text(make_clip, save_clip):
    """With CLIP's 77 positions and no contexts, ``encode_text`` is CLIP's text encoder."""
    clip = make_clip('resnet')
    encoder = MODELS.build(dict(type='CLIPTextContextEncoder', context_length=77,
                                pretrained=save_clip(clip), **TEXT))
    assert isinstance(encoder, CLIPTextContextEncoder)
    assert all(not p.requires_grad for p in encoder.parameters())
    encoder.init_weights()
    text = tokenize(['a photo of a ' + name for name in NAMES])
    with torch.no_grad():
        out = encoder.encode_text(text)
        assert out.shape == (len(NAMES), 32)
        torch.testing.assert_close(out, clip.encode_text(text), atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize('context_length', [9, 13, 17])
def test_init_weights_truncates_positions_to_the_context_length(make_clip, save_clip,
                                                                 context_length):
    """CLIP's 77 text positions become the first ``context_length`` (13 in DenseCLIP; 17 is
    1 + a square, which must not be mistaken for an image grid)."""
    clip = make_clip('resnet')
    encoder = CLIPTextContextEncoder(context_length=context_length, pretrained=save_clip(clip),
                                     **TEXT)
    encoder.init_weights()
    loaded = encoder.state_dict()
    expected = {key: value for key, value in clip.state_dict().items()
                if not key.startswith('visual.') and key != 'logit_scale'}
    assert set(loaded) == set(expected)
    assert loaded['positional_embedding'].shape == (context_length, 32)
    assert torch.equal(loaded['positional_embedding'],
                       expected['positional_embedding'][:context_length])
    for key, value in expected.items():
        if key != 'positional_embedding':
            assert torch.equal(loaded[key], value), key
    assert all(not p.requires_grad for p in encoder.parameters())  # loading keeps it frozen


def test_init_weights_keeps_77_positions(make_clip, save_clip):
    clip = make_clip('resnet')
    encoder = CLIPTextContextEncoder(context_length=77, pretrained=save_clip(clip), **TEXT)
    encoder.init_weights()
    assert torch.equal(encoder.positional_embedding, clip.positional_embedding)
