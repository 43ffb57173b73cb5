"""open_clip models as DenseCLIP towers: their architecture configs and their checkpoint files.

Pure functions. open_clip itself is an optional dependency (``pip install -e .[open_clip]``),
imported only when an open_clip tower is built, never by ``import denseclip``. Checkpoint
files go through the project's one safe reader (:func:`~denseclip.clip.reading.read_state_dict`:
``.safetensors``, or ``torch.load(weights_only=True)`` for ``.bin`` / ``.pt``), and every key
is accounted for: it belongs to the image tower, to the text tower, or is one of
``UNUSED_KEYS``; anything else is an error that names it.
"""
import difflib
import os
from collections.abc import Mapping
from types import ModuleType

import torch

from .reading import ARCHIVE_METADATA, StateDict, read_state_dict
from .errors import CheckpointError

INSTALL_HINT = ('open_clip is an optional dependency of DenseCLIP: install a torch and a '
                'torchvision built for it (open_clip imports torchvision), then '
                'pip install -e .[open_clip] (see docs/open_clip.md)')

#: Where users are told to get open_clip weights from (they download them themselves).
OPEN_CLIP_WEIGHTS_HINT = ('Download the open_clip checkpoint by hand (see docs/open_clip.md) and '
                          'point model.pretrained at the file.')

#: Keys of open_clip's CLIP class that belong to the text tower (kept at the top level).
TEXT_PREFIXES = ('token_embedding.', 'positional_embedding', 'transformer.', 'ln_final.',
                 'text_projection')
#: Keys that neither DenseCLIP tower uses: the contrastive loss's temperature and bias, and the
#: metadata of OpenAI's archives (which open_clip's ``*-quickgelu`` models read as they are).
UNUSED_KEYS = ('logit_scale', 'logit_bias', *ARCHIVE_METADATA)
#: Prefixes that training wrappers put in front of every key (DDP's ``module.``).
WRAPPER_PREFIXES = ('module.', '_orig_mod.')

#: CLIP's BPE vocabulary (DenseCLIP tokenises class names with it).
CLIP_VOCAB_SIZE = 49408


def import_open_clip(needed_by: str = 'an open_clip model') -> ModuleType:
    """``open_clip``, or an ImportError that names what needs it and says how to install it.

    A torchvision built for another torch fails inside ``import open_clip`` with a RuntimeError
    (``operator torchvision::nms does not exist``); that is reported the same way.

    Args:
        needed_by: What needs open_clip, for the message (the config key and the class).
    """
    try:
        import open_clip
    except (ImportError, RuntimeError) as err:
        raise ImportError(f'{needed_by} needs open_clip, which could not be imported '
                          f'({type(err).__name__}: {err}). {INSTALL_HINT}') from err
    return open_clip


def model_config(model_name: str, key: str) -> dict:
    """open_clip's architecture config of ``model_name`` (``'ViT-B-16'``, ``'convnext_base_w'``).

    Args:
        model_name: A name in open_clip's registry (``open_clip.list_models()``).
        key: The config key that named it, for messages.
    """
    open_clip = import_open_clip(key)
    if not isinstance(model_name, str) or model_name not in open_clip.list_models():
        close = difflib.get_close_matches(str(model_name), open_clip.list_models(), n=3)
        guess = f'; did you mean {" or ".join(map(repr, close))}?' if close else ''
        raise ValueError(f'{key}={model_name!r} is not an open_clip architecture (see '
                         f'open_clip.list_models()){guess}')
    return open_clip.get_model_config(model_name)


def check_text_tower(model_name: str, config: dict, key: str) -> dict:
    """The text config of a model whose text tower DenseCLIP can prompt, else a ValueError.

    DenseCLIP inserts learnable contexts after the start token and tokenises class names with
    CLIP's BPE; that needs CLIP's causal text transformer reading CLIP's BPE tokens, pooled at
    the end-of-text token (the largest id) or the last position.
    """
    text = dict(config.get('text_cfg', {}))
    reasons = []
    if text.get('hf_model_name'):
        reasons.append(f'its text tower is the Hugging Face model {text["hf_model_name"]!r}, '
                       "not CLIP's causal transformer")
    if text.get('hf_tokenizer_name') or text.get('tokenizer_mode'):
        tokenizer = text.get('hf_tokenizer_name') or text['tokenizer_mode']
        reasons.append(f"it tokenises with {tokenizer!r}, not CLIP's BPE")
    if text.get('vocab_size', CLIP_VOCAB_SIZE) != CLIP_VOCAB_SIZE:
        reasons.append(f'its vocabulary has {text["vocab_size"]} tokens, CLIP\'s BPE '
                       f'{CLIP_VOCAB_SIZE}')
    if text.get('no_causal_mask'):
        reasons.append('its text transformer is bidirectional (no causal mask)')
    if text.get('embed_cls'):
        reasons.append('its text tower appends a class token (CoCa)')
    if text.get('pool_type', 'argmax') not in ('argmax', 'last'):
        reasons.append(f'it pools text at {text["pool_type"]!r}, not at the end-of-text token')
    if 'multimodal_cfg' in config:
        reasons.append('it is a captioning model (CoCa)')
    if reasons:
        raise ValueError(
            f'{key}={model_name!r}: DenseCLIP cannot prompt this text tower: '
            f'{"; ".join(reasons)}. Its learnable contexts need CLIP\'s causal text transformer '
            'with CLIP\'s BPE tokenizer (OpenAI, LAION, DataComp, ConvNeXt-CLIP, EVA02-CLIP '
            'models); SigLIP and other text towers are not supported')
    return text


def _without_wrapper(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Strips a training wrapper's prefix (``module.``) if every key has it."""
    for prefix in WRAPPER_PREFIXES:
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            return {key[len(prefix):]: value for key, value in state_dict.items()}
    return dict(state_dict)


def split_towers(state_dict: Mapping[str, torch.Tensor],
                 source: str) -> tuple[StateDict, StateDict]:
    """Splits an open_clip state dict into its image tower and its text tower.

    The image tower is ``visual.*``; the text tower is ``text.*`` (``CustomTextCLIP``: EVA02)
    or the top-level ``TEXT_PREFIXES`` keys (``CLIP``: OpenAI, LAION, DataComp, ConvNeXt).
    ``UNUSED_KEYS`` are dropped by name.

    Raises:
        CheckpointError: a key belongs to neither tower (another kind of model), or the file
            holds no image tower.
    """
    state_dict = _without_wrapper(state_dict)
    visual, text, unknown = {}, {}, []
    for key, value in state_dict.items():
        if key.startswith('visual.'):
            visual[key[len('visual.'):]] = value
        elif key.startswith('text.'):
            text[key[len('text.'):]] = value
        elif key.startswith(TEXT_PREFIXES):
            text[key] = value
        elif key not in UNUSED_KEYS:
            unknown.append(key)
    if unknown:
        more = f', ... ({len(unknown) - 5} more)' if len(unknown) > 5 else ''
        raise CheckpointError(
            f'{source}: {len(unknown)} keys belong to neither tower of an open_clip CLIP model '
            f'({", ".join(unknown[:5])}{more}); expected visual.*, text.* or the text keys '
            f'{", ".join(TEXT_PREFIXES)} plus {", ".join(UNUSED_KEYS)}. Is it an open_clip '
            'image-text checkpoint?')
    if not visual:
        raise CheckpointError(f'{source} holds no open_clip image tower (no visual.* keys). '
                              f'{OPEN_CLIP_WEIGHTS_HINT}')
    return visual, text


def read_towers(path: str | os.PathLike) -> tuple[StateDict, StateDict]:
    """Reads an open_clip checkpoint (``.bin``, ``.pt``, ``.safetensors``) as two towers.

    open_clip's training checkpoints (``{'epoch', 'name', 'state_dict', ...}``) are read too;
    their ``state_dict`` is used.
    """
    return split_towers(read_state_dict(path), os.fspath(path))
