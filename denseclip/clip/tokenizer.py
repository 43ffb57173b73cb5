"""A strict wrapper over mmseg's copy of CLIP's BPE tokenizer (ids identical to OpenAI's)."""
from typing import Union

import torch
from mmseg.utils.tokenizer import _tokenizer


def token_count(text: str) -> int:
    """How many tokens ``text`` takes, SOS and EOS included (no tensor is made)."""
    return len(_tokenizer.encode(text)) + 2


def tokenize(texts: Union[str, list[str]], context_length: int = 77,
             truncate: bool = False) -> torch.LongTensor:
    """Tokenizes texts as ``[SOS] tokens [EOS]`` padded with zeros to ``context_length``.

    Unlike ``mmseg.utils.tokenize`` this never cuts a text silently.

    Args:
        texts: One text or a list of texts.
        context_length: Length of every returned row, SOS and EOS included.
        truncate: Cut texts that do not fit and end them with EOS instead of raising.

    Returns:
        Token ids ``[N, context_length]``; the EOS id is the largest id of each row.

    Raises:
        ValueError: a text needs more than ``context_length`` tokens and ``truncate`` is off.
    """
    if isinstance(texts, str):
        texts = [texts]
    sot = _tokenizer.encoder['<start_of_text>']
    eot = _tokenizer.encoder['<end_of_text>']
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for row, text in enumerate(texts):
        tokens = [sot] + _tokenizer.encode(text) + [eot]
        if len(tokens) > context_length:
            if not truncate:
                raise ValueError(
                    f'text {text!r} needs {len(tokens)} tokens (with SOS and EOS) but the '
                    f'context length is {context_length}; shorten it or pass truncate=True')
            tokens = tokens[:context_length - 1] + [eot]
        result[row, :len(tokens)] = torch.tensor(tokens)
    return result
