"""What DenseCLIP derives from its parts, and the checks on what a config states instead.

Pure functions over the ``model.*`` config dicts (and the built backbone): each returns a
completed copy or raises an error that names the config keys and values involved.
"""
import copy
import difflib
from collections.abc import Sequence
from typing import Optional

from mmseg.registry import MODELS
from torch import nn

from denseclip.clip import check_class_names
from denseclip.clip.tokenizer import token_count


def check_registered(cfg: Optional[dict], key: str) -> None:
    """Raises if ``cfg``'s type is not registered, naming the closest registered types."""
    kind = (cfg or {}).get('type')
    if not isinstance(kind, str) or MODELS.get(kind) is not None:
        return
    close = difflib.get_close_matches(kind, [*MODELS.module_dict, *MODELS.parent.module_dict])
    guess = (f'did you mean {" or ".join(map(repr, close))}?' if close else
             'no registered type has a similar name.')
    raise KeyError(f'model.{key}.type={kind!r}: {kind} is not in the mmseg::model registry '
                   f'(unknown type); {guess} Fix the spelling, or import the module that '
                   'registers it (custom_imports in the config)')


def class_names_list(class_names) -> list[str]:
    """``model.class_names`` as a list of distinct, non-empty names."""
    if class_names is None:
        raise ValueError(
            'model.class_names is not set: give it in the config, or build the model through '
            'tools/train.py / tools/test.py (or denseclip.engine.config.fill_class_names), '
            'which take it from the dataset metainfo')
    return check_class_names(class_names, 'model.class_names')


def check_names_fit(class_names: Sequence[str], context_length: int,
                    source: str = 'model.class_names') -> None:
    """Every class name fits ``model.context_length`` tokens (SOS and EOS included): the check
    that building DenseCLIP makes, also made by ``tools/check_dataset.py`` before a run.

    Raises:
        ValueError: naming the names that do not fit, their lengths and the config keys.
    """
    lengths = {name: token_count(name) for name in class_names}
    too_long = {name: length for name, length in lengths.items() if length > context_length}
    if too_long:
        raise ValueError(
            f'{source}: {too_long} (name: tokens with SOS and EOS) do not fit '
            f'model.context_length={context_length}; shorten those names, or raise '
            'model.context_length and model.text_encoder.context_length by the same amount')


def check_clip_image_tower(backbone: dict, pretrained: str) -> None:
    """``model.pretrained`` loads both towers: the backbone's class must take CLIP's image tower.

    A backbone class says it does with the class attribute ``clip_image_tower = True``.
    """
    kind = backbone.get('type')
    backbone_class = MODELS.get(kind) if isinstance(kind, str) else kind
    if not getattr(backbone_class, 'clip_image_tower', False):
        raise ValueError(
            f'model.pretrained={pretrained!r} points a CLIP checkpoint at both towers, '
            f'but backbone {kind!r} is not a CLIP backbone; use model.text_pretrained and '
            'the backbone\'s init_cfg instead')


def embed_dim_of(backbone: nn.Module) -> int:
    """Width ``D`` of the ``(global, dense)`` embeddings a built backbone appends to its maps.

    Backbones that return them say so with an ``embed_dim`` attribute that is not None.
    """
    embed_dim = getattr(backbone, 'embed_dim', None)
    if embed_dim is None:
        raise ValueError(
            f'model.backbone: {type(backbone).__name__} returns no (global, dense) '
            'embeddings (it has no embed_dim), but DenseCLIP matches them with the text; '
            'use CLIPResNetWithAttention, CLIPVisionTransformer with get_embeddings=True, '
            'or wrap the backbone in BackboneWithAttentionPool')
    return embed_dim


def with_derived(cfg: dict, key: str, **derived: tuple[int, str]) -> dict:
    """A copy of ``model.<key>`` with each ``name=(value, source)`` filled in.

    ``source`` names the config keys (and values) the value comes from. A value that the config
    states (not None) must agree with it.
    """
    cfg = copy.deepcopy(cfg)
    for name, (value, source) in derived.items():
        given = cfg.get(name)
        if given is not None and given != value:
            raise ValueError(f'model.{key}.{name}={given} disagrees with {source}; drop it '
                             '(it is derived) or make the two agree')
        cfg[name] = value
    return cfg


def num_contexts_of(text_encoder: nn.Module, context_length: int) -> int:
    """Learnable contexts ``M``: the text encoder's positions left by the name tokens."""
    num_contexts = text_encoder.context_length - context_length
    if num_contexts < 0:
        raise ValueError(f'model.context_length={context_length} exceeds '
                         f'model.text_encoder.context_length={text_encoder.context_length}, '
                         'which holds the name tokens and the learnable contexts')
    return num_contexts


def with_text_widths(text_encoder: nn.Module, context_length: int,
                     context_decoder: Optional[dict],
                     pre_prompter: Optional[dict]) -> tuple[Optional[dict], Optional[dict]]:
    """The prompting configs with the widths and lengths that the built text encoder sets.

    Both are completed and checked even when ``model.prompting`` leaves one unused, so that
    switching the mode cannot uncover a wrong number.
    """
    embed_dim = (text_encoder.embed_dim, f'model.backbone.output_dim={text_encoder.embed_dim}')
    if context_decoder is not None:
        context_decoder = with_derived(context_decoder, 'context_decoder', visual_dim=embed_dim)
    if pre_prompter is not None:
        num_contexts = num_contexts_of(text_encoder, context_length)
        pre_prompter = with_derived(
            pre_prompter, 'pre_prompter', visual_dim=embed_dim,
            num_contexts=(num_contexts, 'model.text_encoder.context_length - '
                          f'model.context_length = {text_encoder.context_length} - '
                          f'{context_length} = {num_contexts}'),
            text_width=(text_encoder.width,
                        f'model.text_encoder.transformer_width={text_encoder.width}'))
    return context_decoder, pre_prompter


def with_num_classes(head: dict, num_classes: int, key: str) -> dict:
    """A copy of the head config ``model.<key>`` with ``num_classes`` filled in."""
    head = copy.deepcopy(head)
    given = head.get('num_classes')
    head['num_classes'] = num_classes
    if given is not None and given != num_classes:
        raise ValueError(f'model.{key}.num_classes={given} disagrees with the '
                         f'{num_classes} class names; drop it (it is derived) or fix the '
                         'class names')
    return head


def auxiliary_with_num_classes(heads, num_classes: int):
    """``model.auxiliary_head`` (None, one head or a list) with ``num_classes`` filled in."""
    if heads is None:
        return None
    if isinstance(heads, (list, tuple)):
        return [with_num_classes(head, num_classes, f'auxiliary_head[{index}]')
                for index, head in enumerate(heads)]
    return with_num_classes(heads, num_classes, 'auxiliary_head')


def with_score_channels(module: dict, num_classes: int, index: int, key: str) -> dict:
    """A copy of ``model.<key>`` whose level ``index`` also takes the ``K``-channel score map."""
    module = copy.deepcopy(module)
    channels = list(module['in_channels'])
    if not 0 <= index < len(channels):
        raise ValueError(f'model.score_concat_index={index} is out of range for the '
                         f'{len(channels)} levels of model.{key}.in_channels')
    channels[index] += num_classes  # the score map is concatenated to this level
    module['in_channels'] = channels
    return module
