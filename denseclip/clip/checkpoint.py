"""Loading CLIP weights into models: towers, the CLIP model, positional embeddings fitted.

Pure functions over state dicts that :mod:`denseclip.clip.reading` (the one reader of weight
files) returns: split a CLIP state dict into its towers, fit positional embeddings to a
tower (image grids resized, text positions truncated), load with the exact set of allowed
missing/unexpected keys asserted (:func:`load_into`), and build a :class:`CLIP` of the
architecture the weights describe (:func:`infer_clip_config`, :func:`build_model`,
:func:`load`). Nothing here reads a file itself or touches the network.
"""
import os
from collections.abc import Iterable, Mapping

import torch
from mmengine.logging import MMLogger
from torch import nn

from .errors import CheckpointError
from .fit import check_fit
from .layers import resize_grid_embedding
from .model import CLIP
from .reading import ARCHIVE_METADATA, StateDict, read_clip_weights, select_prefix

#: What to do when CLIP weights do not fit a tower.
TOWER_FIX = ('Use the CLIP weights of the architecture that the config describes '
             '(model.backbone, model.text_encoder), or change those settings to match them.')


def visual_state_dict(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """The image tower of a CLIP state dict (``visual.*``)."""
    return select_prefix(state_dict, 'visual.')


def text_state_dict(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """The text tower of a CLIP state dict: all but ``visual.*``, ``logit_scale`` and metadata."""
    skip = ('logit_scale',) + ARCHIVE_METADATA
    return {key: value for key, value in state_dict.items()
            if not key.startswith('visual.') and key not in skip}


def truncate_text_positions(embedding: torch.Tensor,
                            target_shape: tuple[int, ...]) -> torch.Tensor:
    """Keeps the first ``target_shape[0]`` positions of a text positional embedding ``[L, C]``."""
    length = target_shape[0]
    if embedding.ndim != 2 or embedding.shape[1] != target_shape[1] or embedding.shape[0] < length:
        raise CheckpointError(f'text positional embedding {tuple(embedding.shape)} cannot be '
                              f'truncated to {tuple(target_shape)}')
    return embedding[:length]


def resize_grid_positions(embedding: torch.Tensor,
                          target_shape: tuple[int, ...]) -> torch.Tensor:
    """Fits an image positional embedding ``[1 + S*S, C]`` to ``target_shape``.

    The class/global position is kept; the grid is resized bilinearly.
    """
    if tuple(embedding.shape) == tuple(target_shape):
        return embedding
    side = int(round((target_shape[0] - 1) ** 0.5))
    if embedding.ndim != 2 or embedding.shape[1] != target_shape[1] or (
            side * side + 1 != target_shape[0]):
        raise CheckpointError(f'image positional embedding {tuple(embedding.shape)} cannot be '
                              f'resized to {tuple(target_shape)} (1 + a square grid of the same '
                              'width)')
    try:
        return resize_grid_embedding(embedding, 1, (side, side))
    except ValueError as err:
        raise CheckpointError(
            f'image positional embedding {tuple(embedding.shape)}: {err}') from err


def load_into(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str,
              allowed_missing: Iterable[str] = (), allowed_unexpected: Iterable[str] = (),
              text_positions: tuple[str, ...] = (),
              grid_positions: tuple[str, ...] = ()) -> None:
    """Loads ``state_dict`` into ``module`` and asserts exactly which keys may differ.

    Args:
        module: The receiving module.
        state_dict: Weights, already stripped of any prefix.
        source: The file name (or a description), used in messages.
        allowed_missing: Glob patterns of module keys that the checkpoint may lack (new layers).
        allowed_unexpected: Glob patterns of checkpoint keys the module may ignore.
        text_positions: Keys of text positional embeddings to truncate to the module's length.
        grid_positions: Keys of image positional embeddings to resize to the module's grid.

    Raises:
        CheckpointError: a parameter has the wrong shape, or keys are missing/unexpected beyond
            the allowed patterns (the checkpoint is of another architecture).
    """
    own = module.state_dict()
    state_dict = dict(state_dict)
    for keys, fit in ((text_positions, truncate_text_positions),
                      (grid_positions, resize_grid_positions)):
        for key in keys:
            if key in state_dict and key in own:
                try:
                    state_dict[key] = fit(state_dict[key], own[key].shape)
                except CheckpointError as err:
                    raise CheckpointError(f'{source} does not fit {type(module).__name__} (wrong '
                                          f'architecture or settings?): {key}: {err}') from err
    check_fit(module, state_dict, source, fix=TOWER_FIX, allowed_missing=allowed_missing,
              allowed_unexpected=allowed_unexpected)
    result = module.load_state_dict(
        {key: value for key, value in state_dict.items() if key in own}, strict=False)
    logger = MMLogger.get_current_instance()
    logger.info(f'loaded {len(own) - len(result.missing_keys)} tensors from {source} into '
                f'{type(module).__name__}')
    if result.missing_keys:
        logger.info(f'newly initialised (not in {source}): {", ".join(result.missing_keys)}')
    ignored = [key for key in state_dict if key not in own]
    if ignored:
        logger.info(f'ignored from {source}: {len(ignored)} keys')


def infer_clip_config(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Recovers :class:`~denseclip.clip.CLIP`'s constructor arguments from its weights.

    Covers OpenAI's ResNets (RN50, RN101, RN50x4, ...) and ViTs (B/32, B/16, L/14, ...).
    """
    required = ('text_projection', 'positional_embedding', 'token_embedding.weight',
                'ln_final.weight')
    absent = [key for key in required if key not in state_dict]
    if absent or not any(key.startswith('visual.') for key in state_dict):
        raise CheckpointError('not a CLIP state dict: it lacks ' +
                              ', '.join(absent or ['visual.*']))
    if 'visual.proj' in state_dict:  # ViT
        vision_width = state_dict['visual.conv1.weight'].shape[0]
        vision_layers = len({key.split('.')[3] for key in state_dict
                             if key.startswith('visual.transformer.resblocks.')
                             and key.endswith('.attn.in_proj_weight')})
        patch_size = state_dict['visual.conv1.weight'].shape[-1]
        grid = round((state_dict['visual.positional_embedding'].shape[0] - 1) ** 0.5)
        image_resolution = patch_size * grid
    else:  # ModifiedResNet
        vision_layers = tuple(
            len({key.split('.')[2] for key in state_dict
                 if key.startswith(f'visual.layer{stage}.')}) for stage in (1, 2, 3, 4))
        vision_width = state_dict['visual.layer1.0.conv1.weight'].shape[0]
        patch_size = None
        grid = round((state_dict['visual.attnpool.positional_embedding'].shape[0] - 1) ** 0.5)
        image_resolution = 32 * grid
    width = state_dict['ln_final.weight'].shape[0]
    return dict(
        embed_dim=state_dict['text_projection'].shape[1],
        image_resolution=image_resolution,
        vision_layers=vision_layers,
        vision_width=vision_width,
        vision_patch_size=patch_size,
        context_length=state_dict['positional_embedding'].shape[0],
        vocab_size=state_dict['token_embedding.weight'].shape[0],
        transformer_width=width,
        transformer_heads=width // 64,
        transformer_layers=len({key.split('.')[2] for key in state_dict
                                if key.startswith('transformer.resblocks.')}),
    )


def build_model(state_dict: Mapping[str, torch.Tensor]) -> CLIP:
    """Builds a :class:`CLIP` of the right architecture and loads ``state_dict`` exactly."""
    model = CLIP(**infer_clip_config(state_dict))
    load_into(model, {key: value.float() if value.is_floating_point() else value
                      for key, value in state_dict.items()},
              source='CLIP state dict', allowed_unexpected=ARCHIVE_METADATA)
    return model.eval()


def load(path: str | os.PathLike, device: str | torch.device = 'cpu') -> CLIP:
    """Loads CLIP weights (:func:`read_clip_weights`) as an fp32 model in eval mode."""
    return build_model(read_clip_weights(path)).to(device)


def load_tower(module: nn.Module, path: str | os.PathLike, part: str,
               allowed_missing: Iterable[str] = (), allowed_unexpected: Iterable[str] = ()) -> None:
    """Loads the ``'visual'`` or ``'text'`` part of CLIP weights into a tower.

    ``path`` is any file :func:`read_clip_weights` takes, a checkpoint of the contrastive CLIP
    model included. Positional embeddings are fitted to the tower: image grids are resized
    bilinearly to its ``input_resolution``, text positions truncated to its ``context_length``.
    """
    if part not in ('visual', 'text'):
        raise ValueError(f"part must be 'visual' or 'text', got {part!r}")
    full = read_clip_weights(path)
    if part == 'visual':
        state_dict = visual_state_dict(full)
        positions = dict(grid_positions=('positional_embedding', 'attnpool.positional_embedding'))
    else:
        state_dict = text_state_dict(full)
        positions = dict(text_positions=('positional_embedding',))
    if not state_dict:
        raise CheckpointError(f'{os.fspath(path)!r} holds no {part} tower of a CLIP model '
                              f'(no {part} keys found)')
    load_into(module, state_dict, source=os.fspath(path), allowed_missing=allowed_missing,
              allowed_unexpected=allowed_unexpected, **positions)
