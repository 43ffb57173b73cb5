"""Reading, converting and loading CLIP weights: the one place that handles checkpoints.

Pure functions over state dicts. Supported inputs: OpenAI's TorchScript archives (``RN50.pt``,
``ViT-B-16.pt``; read with ``torch.jit.load``), ``.safetensors`` files, plain state dicts and
mmengine checkpoints (``{'state_dict': ...}``), read with ``torch.load(weights_only=True)`` so
that a file cannot run code when loaded. Nothing here touches the network.
"""
import fnmatch
import os
import pickle
import zipfile
from collections.abc import Iterable, Mapping

import safetensors.torch
import torch
from mmengine.logging import MMLogger
from torch import nn

from .layers import resize_grid_embedding
from .model import CLIP

#: int64 scalars that OpenAI's archives store next to the weights.
ARCHIVE_METADATA = ('input_resolution', 'context_length', 'vocab_size')

#: Where users are told to get the weights from when a file is missing.
WEIGHTS_HINT = ('Download the OpenAI CLIP archives (RN50.pt, RN101.pt, ViT-B-16.pt) as described '
                'in pretrained/README.md and place them in pretrained/.')

StateDict = dict[str, torch.Tensor]


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or does not fit the model."""


#: Phrases of torch's weights-only unpickler when it refuses an object; it words damaged
#: files ("Unsupported operand 60") as "Weights only load failed" too.
WEIGHTS_ONLY_REFUSALS = ('Unsupported global', 'unrecognized function', 'Can only build',
                         'Can only create new object', 'is not allowed')


def is_torchscript(path: str) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip holding ``constants.pkl``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith('constants.pkl') for name in archive.namelist())


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """Reads a CLIP archive, a state dict or an mmengine checkpoint as an fp32 state dict.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message says where to get CLIP weights).
        CheckpointError: the file is truncated, not a checkpoint, or would run code on loading.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file {path!r} does not exist. {WEIGHTS_HINT}')
    try:
        if is_torchscript(path):
            state_dict = torch.jit.load(path, map_location='cpu').state_dict()
        elif path.endswith('.safetensors'):
            state_dict = safetensors.torch.load_file(path, device='cpu')
        else:
            state_dict = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        if not any(phrase in str(err) for phrase in WEIGHTS_ONLY_REFUSALS):
            raise CheckpointError(f'cannot read checkpoint {path!r}: the file is truncated, '
                                  f'corrupt or not a PyTorch checkpoint ({err})') from err
        raise CheckpointError(
            f'refusing to load {path!r}: it is not a plain tensor checkpoint and loading it would '
            f'need arbitrary code to run (weights_only=True refused it: {err}). Convert it to a '
            'state dict of tensors first.') from err
    except Exception as err:  # torch raises many types for damaged files
        raise CheckpointError(f'cannot read checkpoint {path!r}: the file is truncated, corrupt '
                              f'or not a PyTorch checkpoint ({type(err).__name__}: {err})') from err
    if isinstance(state_dict, Mapping) and 'state_dict' in state_dict:
        state_dict = state_dict['state_dict']
    if not isinstance(state_dict, Mapping) or not all(
            isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise CheckpointError(f'{path!r} does not hold a state dict (a mapping of names to '
                              'tensors)')
    return {key: value.float() if value.is_floating_point() else value
            for key, value in state_dict.items()}


def select_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """The entries under ``prefix`` (e.g. ``'visual.'``) with the prefix stripped."""
    return {key[len(prefix):]: value for key, value in state_dict.items()
            if key.startswith(prefix)}


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


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


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
    mismatched = [f'{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}'
                  for key, value in state_dict.items()
                  if key in own and value.shape != own[key].shape]
    missing = [key for key in own if key not in state_dict and not _matches(key, allowed_missing)]
    unexpected = [key for key in state_dict
                  if key not in own and not _matches(key, allowed_unexpected)]
    if mismatched or missing or unexpected:
        details = '; '.join(filter(None, [
            'shape mismatch: ' + ', '.join(mismatched[:5]) if mismatched else '',
            'missing: ' + ', '.join(missing[:5]) if missing else '',
            'unexpected: ' + ', '.join(unexpected[:5]) if unexpected else '']))
        raise CheckpointError(
            f'{source} does not fit {type(module).__name__} (wrong architecture or settings?): '
            f'{len(mismatched)} shape mismatches, {len(missing)} missing and {len(unexpected)} '
            f'unexpected keys; {details}')
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
    """Loads an OpenAI CLIP archive or a CLIP state dict as an fp32 model in eval mode."""
    return build_model(read_state_dict(path)).to(device)


def load_tower(module: nn.Module, path: str | os.PathLike, part: str,
               allowed_missing: Iterable[str] = (), allowed_unexpected: Iterable[str] = ()) -> None:
    """Loads the ``'visual'`` or ``'text'`` part of a CLIP checkpoint into a tower.

    Positional embeddings are fitted to the tower: image grids are resized bilinearly to its
    ``input_resolution``, text positions truncated to its ``context_length``.
    """
    if part not in ('visual', 'text'):
        raise ValueError(f"part must be 'visual' or 'text', got {part!r}")
    full = read_state_dict(path)
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
