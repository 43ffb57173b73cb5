"""``denseclip.clip.tokenize``: OpenAI's ids, zero padding, and no silent truncation."""
import pytest
import torch
from mmseg.utils import tokenize as mmseg_tokenize

from denseclip.clip import tokenize

SOS, EOS = 49406, 49407

# ids of OpenAI's CLIP BPE vocabulary (as printed by ``clip.tokenize`` of the original package)
KNOWN_IDS = {
    'a photo of a cat': [SOS, 320, 1125, 539, 320, 2368, EOS],
    'a dog': [SOS, 320, 1929, EOS],
    'a diagram': [SOS, 320, 22697, EOS],
    # lower-cased, runs of white space collapsed, punctuation split off
    'Hello,  World!': [SOS, 3306, 267, 1002, 256, EOS],
    '': [SOS, EOS],
}

TEXTS = ['a photo of a cat', 'wall', 'a photo of a traffic light.', 'Sky  ', 'pool table',
         'an unusually long sentence about ' + 'very ' * 30 + 'small things']


@pytest.mark.parametrize('text, ids', KNOWN_IDS.items())
def test_known_ids(text, ids):
    tokens = tokenize(text)
    assert tokens.shape == (1, 77)
    assert tokens.dtype == torch.long
    assert tokens[0, :len(ids)].tolist() == ids
    assert tokens[0, len(ids):].eq(0).all()  # zero padding
    assert tokens[0].argmax().item() == len(ids) - 1  # EOS is the largest id


def test_matches_mmseg_for_texts_that_fit():
    ours = tokenize(TEXTS)
    assert ours.shape == (len(TEXTS), 77)
    assert torch.equal(ours, mmseg_tokenize(TEXTS))
    assert torch.equal(tokenize(TEXTS, context_length=40), mmseg_tokenize(TEXTS, 40))


def test_str_and_list_give_the_same_rows():
    assert torch.equal(tokenize('a dog'), tokenize(['a dog']))
    both = tokenize(['a dog', 'a diagram'])
    assert both.shape == (2, 77)
    assert torch.equal(both[1], tokenize('a diagram')[0])
    assert tokenize([]).shape == (0, 77)


def test_context_length_sets_the_row_length():
    tokens = tokenize('a photo of a cat', context_length=7)  # exactly fits: SOS + 5 + EOS
    assert tokens.tolist() == [KNOWN_IDS['a photo of a cat']]
    assert tokenize('a dog', context_length=13).shape == (1, 13)


def test_too_long_text_raises_with_text_and_lengths():
    text = 'a photo of a cat'  # needs 7 tokens
    with pytest.raises(ValueError) as info:
        tokenize(['a dog', text], context_length=5)
    message = str(info.value)
    assert repr(text) in message or text in message
    assert '7' in message and '5' in message
    assert 'truncate' in message


def test_truncate_keeps_eos_last():
    tokens = tokenize(['a photo of a cat', 'a dog'], context_length=5, truncate=True)
    assert tokens.tolist() == [[SOS, 320, 1125, 539, EOS], [SOS, 320, 1929, EOS, 0]]
    # mmseg truncates the same way (it only does so silently)
    assert torch.equal(tokens, mmseg_tokenize(['a photo of a cat', 'a dog'], 5))


def test_truncate_long_text_at_default_length():
    text = ' '.join(['cat'] * 100)
    with pytest.raises(ValueError, match='102'):
        tokenize(text)
    tokens = tokenize(text, truncate=True)
    assert tokens.shape == (1, 77)
    assert tokens[0, 0] == SOS and tokens[0, -1] == EOS
    assert tokens[0, 1:-1].eq(2368).all()
