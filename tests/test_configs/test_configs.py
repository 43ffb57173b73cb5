"""Every segmentation config under ``configs/`` (see OWN_TESTS for the folders left out)
loads, is named as STYLE.md says, and builds a model whose parts agree with each other (no
weights are loaded). A small-GPU variant (``1xb4x8``: GPUs x images x accumulated iterations)
must be its 8-GPU parent with every iteration count scaled by the accumulation.

The full-size models are built on the CPU, one at a time (0.1-1.5 s each; the whole module
takes about 25 s on 2 cores with ``OMP_NUM_THREADS=1``). The meta device would be faster but
mmseg's Swin calls ``Tensor.item()`` in its constructor. Channel agreement is checked with a
64 x 64 image through the backbone and neck only: the text encoder, which would need ~150
GFLOPs for ADE20K's 150 class names, is not run; a zero score map stands in for its output.
"""
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmseg.datasets import ADE20KDataset
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules

import denseclip  # registers the DenseCLIP modules
from denseclip.datasets import synthetic_metainfo
from denseclip.engine import revert_sync_bn_cfg
from denseclip.engine.config import fill_class_names

register_all_modules(init_default_scope=True)  # data preprocessors build in mmseg

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / 'configs'
#: Folders with configs of other kinds, built and checked by their own test modules:
#: CLIP contrastive training (test_clip_configs.py), zero-shot segmentation
#: (test_zero_shot_configs.py), DenseCLIP with open_clip towers, which need the open_clip
#: extra (tests/test_open_clip/test_open_clip_configs.py, run in .venv-open_clip).
OWN_TESTS = ('_base_', 'clip', 'zero_shot', 'open_clip')
CONFIGS = sorted(path for path in CONFIG_DIR.rglob('*.py')
                 if path.relative_to(CONFIG_DIR).parts[0] not in OWN_TESTS)
IDS = [str(path.relative_to(CONFIG_DIR)) for path in CONFIGS]

#: STYLE.md: {method}_{backbone}_{neck}_{gpus}xb{batch}-{iters}_{dataset}-{crop}.py; the neck is
#: left out where the method names the decoder (mmseg's ``fpn_r50_...``, ``upernet_swin-t_...``).
#: ``{gpus}xb{batch}x{accumulation}``: gradients of that many iterations per optimiser step
#: (``optim_wrapper.accumulative_counts``); ``{iters}`` then counts optimiser steps.
NAME = re.compile(r'(?P<method>[a-z0-9-]+)_(?P<backbone>[a-z0-9.-]+)(?:_(?P<neck>[a-z0-9-]+))?'
                  r'_(?P<gpus>\d+)xb(?P<batch>\d+)(?:x(?P<accumulation>\d+))?-(?P<iters>\d+)k'
                  r'_(?P<dataset>[a-z0-9]+)-(?P<height>\d+)x(?P<width>\d+)\.py')
#: data_root of each dataset named in a file name
DATA_ROOTS = {'ade20k': 'data/ade/ADEChallengeData2016',
              'synthetic': 'data/synthetic/ADEChallengeData2016'}
PAPER_BATCH = 32  # DESIGN.md: 8 GPUs x 4 images for every ADE20K model
CLIP_MEAN = [0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255]
IMAGENET_MEAN = [123.675, 116.28, 103.53]
CLIP_CHECKPOINTS = {(3, 4, 6, 3): 'RN50.pt', (3, 4, 23, 3): 'RN101.pt', 'vit': 'ViT-B-16.pt'}
#: The architecture each backbone name stands for (keys of the innermost backbone config),
#: and its ImageNet checkpoint when it is not a CLIP tower.
ARCHITECTURES = {
    'r50': (dict(layers=(3, 4, 6, 3)), dict(depth=50)),
    'r101': (dict(layers=(3, 4, 23, 3)), dict(depth=101)),
    'vit-b': (dict(type='CLIPVisionTransformer', width=768, layers=12, patch_size=16), ),
    'swin-t': (dict(type='SwinTransformer', embed_dims=96, depths=(2, 2, 6, 2)), ),
    'swin-s': (dict(type='SwinTransformer', embed_dims=96, depths=(2, 2, 18, 2)), ),
}
IMAGENET_CHECKPOINTS = {
    'r50': 'pretrained/resnet50_v1c.pth',
    'r101': 'pretrained/resnet101_v1c.pth',
    'swin-t': 'pretrained/swin_tiny_patch4_window7_224.pth',
    'swin-s': 'pretrained/swin_small_patch4_window7_224.pth',
}

#: Table 2: each ablation is the Table 1 RN50 config with these model keys changed.
MAIN_RN50 = 'denseclip/denseclip_r50_fpn_8xb4-80k_ade20k-512x512.py'
ABLATIONS = {
    'ablations/denseclip_r50-no-prompt_fpn_8xb4-80k_ade20k-512x512.py': {
        'model.prompting': 'none'},
    'ablations/denseclip_r50-pre-prompt_fpn_8xb4-80k_ade20k-512x512.py': {
        'model.prompting': 'pre'},
    'ablations/denseclip_r50-pre-post-prompt_fpn_8xb4-80k_ade20k-512x512.py': {
        'model.prompting': 'pre+post'},
}
#: Table 1: RN101 is RN50 with the deeper tower, its checkpoint and its embedding width, which
#: the whole text branch takes from the backbone (one line).
MAIN_RN101 = 'denseclip/denseclip_r101_fpn_8xb4-80k_ade20k-512x512.py'
RN101_CHANGES = {'model.pretrained': 'pretrained/RN101.pt',
                 'model.backbone.layers': (3, 4, 23, 3), 'model.backbone.output_dim': 512}
#: The paper's batch on one or two GPUs: the Table 1 RN50 config with accumulated gradients
#: (the iteration counts are checked separately), plus these keys.
ACCUMULATION_VARIANTS = {
    'denseclip/denseclip_r50_fpn_1xb4x8-80k_ade20k-512x512.py': {
        'model.decode_head.norm_cfg.type': 'BN'},  # one process: nothing to synchronise
    'denseclip/denseclip_r50_fpn_2xb4x4-80k_ade20k-512x512.py': {},
}
#: Widths that DenseCLIP derives (from the backbone's output_dim and the text encoder): no
#: config states them.
DERIVED_WIDTHS = ('text_encoder.embed_dim', 'context_decoder.visual_dim',
                  'pre_prompter.visual_dim', 'pre_prompter.num_contexts',
                  'pre_prompter.text_width')
#: Table 5: the DenseCLIP Swin configs share their baseline's Swin and heads
#: (configs/_base_/models/swin_upernet_parts.py).
SWIN_PAIRS = [(f'denseclip/denseclip_swin-{size}_upernet_8xb4-80k_ade20k-512x512.py',
               f'clip_fpn/upernet_swin-{size}_8xb4-80k_ade20k-512x512.py') for size in 'ts']


def load(config: str | Path) -> Config:
    return Config.fromfile(str(CONFIG_DIR / config))


def flatten(tree, prefix: str = '') -> dict:
    """Nested dicts -> ``{'a.b.c': leaf}`` (lists and tuples are leaves)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat = {}
    for key, value in tree.items():
        flat.update(flatten(value, f'{prefix}.{key}' if prefix else str(key)))
    return flat


def dataset_cfg(cfg: Config) -> dict:
    return cfg.train_dataloader.dataset


def is_denseclip(cfg: Config) -> bool:
    return cfg.model.type == 'DenseCLIP'


def clip_backbone(cfg: Config) -> bool:
    """Whether the backbone is a CLIP image tower (one that takes a CLIP checkpoint)."""
    return getattr(MODELS.get(cfg.model.backbone.type), 'clip_image_tower', False)


def test_configs_found():
    folders = {path.relative_to(CONFIG_DIR).parts[0] for path in CONFIGS}
    assert {'denseclip', 'clip_fpn', 'ablations', 'quickstart'} <= folders
    assert set(ABLATIONS) == {config for config in IDS if config.startswith('ablations/')}


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_name_matches_config(path: Path):
    """The file name's batch, iterations, dataset and crop are the config's."""
    match = NAME.fullmatch(path.name)
    assert match, f'{path.name} does not follow {NAME.pattern}'
    name = match.groupdict()
    cfg = Config.fromfile(str(path))
    accumulation = int(name['accumulation'] or 1)
    assert cfg.optim_wrapper.get('accumulative_counts', 1) == accumulation
    assert cfg.train_dataloader.batch_size == int(name['batch'])
    assert cfg.train_cfg.max_iters == int(name['iters']) * 1000 * accumulation
    assert dataset_cfg(cfg).data_root == DATA_ROOTS[name['dataset']]
    if name['dataset'] == 'ade20k':  # images per optimiser step
        batch = int(name['gpus']) * cfg.train_dataloader.batch_size * accumulation
        assert batch == PAPER_BATCH
    crop = (int(name['height']), int(name['width']))
    assert tuple(cfg.crop_size) == crop
    assert tuple(cfg.model.data_preprocessor.size) == crop
    random_crops = [step for step in dataset_cfg(cfg).pipeline if step.type == 'RandomCrop']
    assert [tuple(step.crop_size) for step in random_crops] == [crop]
    if cfg.model.test_cfg.get('mode') == 'slide':
        assert tuple(cfg.model.test_cfg.crop_size) == crop
    assert is_denseclip(cfg) == (name['method'] == 'denseclip')


def architecture(backbone_name: str) -> str | None:
    """``'r50'`` for ``clip-r50``, ``r50-in1k``, ``r50-no-prompt`` ...; None for ``tiny-r``."""
    found = re.search(r'(?:^|-)(' + '|'.join(ARCHITECTURES) + r')(?:-|$)', backbone_name)
    return found and found[1]


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_backbone_matches_name(path: Path):
    """``r101`` builds a ResNet-101, ``clip-``/``denseclip`` a CLIP tower, ``in1k`` not ..."""
    name = NAME.fullmatch(path.name)
    cfg = Config.fromfile(str(path))
    arch = architecture(name['backbone'])
    if arch is None:  # the quickstart's tiny network
        return
    if name['method'] == 'denseclip':
        expects_clip = not any(marker in name['backbone'] for marker in ('in1k', 'swin'))
    else:
        expects_clip = name['backbone'].startswith('clip-')
    assert clip_backbone(cfg) == expects_clip
    backbone = cfg.model.backbone
    if backbone.type == 'BackboneWithAttentionPool':
        backbone = backbone.backbone
    assert any(all(backbone.get(key) == value for key, value in keys.items())
               for keys in ARCHITECTURES[arch]), backbone
    if not expects_clip:
        assert backbone.init_cfg == dict(type='Pretrained', checkpoint=IMAGENET_CHECKPOINTS[arch])


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_weights_and_normalisation(path: Path):
    """CLIP towers get CLIP's checkpoint and statistics, ImageNet backbones ImageNet's."""
    cfg = Config.fromfile(str(path))
    model = cfg.model
    mean = model.data_preprocessor.mean
    if clip_backbone(cfg):
        assert mean == pytest.approx(CLIP_MEAN)
        backbone = model.backbone
        key = 'vit' if backbone.type == 'CLIPVisionTransformer' else tuple(backbone.layers)
        checkpoint = model.get('pretrained') if is_denseclip(cfg) else backbone.get('pretrained')
        if checkpoint is not None:  # None: random init (the quickstart)
            assert checkpoint == f'pretrained/{CLIP_CHECKPOINTS[key]}'
    else:
        assert mean == pytest.approx(IMAGENET_MEAN)
        assert not model.get('pretrained')
        if is_denseclip(cfg):  # the text tower alone comes from CLIP
            assert model.text_pretrained == f'pretrained/{CLIP_CHECKPOINTS["vit"]}'
    if is_denseclip(cfg):  # each width once: DenseCLIP derives the text branch's
        stated = flatten(model.to_dict())
        assert not [key for key in DERIVED_WIDTHS if stated.get(key) is not None]
        assert model.backbone.output_dim


def backbone_levels(model: torch.nn.Module, num_classes: int) -> list[torch.Tensor]:
    """The levels that the neck (or head) receives from a 64 x 64 image.

    For DenseCLIP, a zero score map of ``num_classes`` channels is concatenated where the
    segmentor concatenates the real one; the dense embeddings must have the text width.
    """
    with torch.no_grad():
        outputs = list(model.backbone(torch.zeros(1, 3, 64, 64)))
        if not isinstance(model, denseclip.models.DenseCLIP):
            return outputs
        global_embedding, dense = outputs.pop()
        embed_dim = model.text_encoder.embed_dim
        assert global_embedding.shape == (1, embed_dim)
        assert dense.shape[:2] == (1, embed_dim)
        index = model.score_concat_index
        score_map = dense.new_zeros(1, num_classes, *dense.shape[2:])
        outputs[index] = torch.cat([outputs[index], score_map], dim=1)
        return outputs


def head_channels(head) -> list[tuple[int, int]]:
    """``(input index, in_channels)`` of each level that a decode head takes."""
    in_index = head.in_index if isinstance(head.in_index, (list, tuple)) else [head.in_index]
    in_channels = head.in_channels if isinstance(head.in_channels, (list, tuple)) else [
        head.in_channels]
    return list(zip(in_index, in_channels))


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_build(path: Path):
    """Builds the model (weights not loaded) and checks classes and channels end to end."""
    cfg = Config.fromfile(str(path))
    fill_class_names(cfg)
    reverted = revert_sync_bn_cfg(cfg.model)  # torch's SyncBatchNorm refuses CPU tensors
    if int(NAME.fullmatch(path.name)['gpus']) > 1:
        assert reverted, 'a multi-GPU recipe should use SyncBN (as the paper does)'
    else:
        assert not reverted, 'a one-GPU recipe should say BN (the runner reverts SyncBN)'
    classes = dataset_cfg(cfg).get('metainfo', {}).get('classes') or ADE20KDataset.METAINFO[
        'classes']
    num_classes = len(classes)

    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()

    heads = [model.decode_head]  # the heads that decode the neck's (or backbone's) levels
    if model.with_auxiliary_head:
        aux = model.auxiliary_head
        heads += list(aux) if isinstance(aux, torch.nn.ModuleList) else [aux]
    for head in heads:
        assert head.num_classes == num_classes
        assert head.conv_seg.out_channels == num_classes
    if is_denseclip(cfg):
        assert model.class_names == tuple(classes)
        assert model.identity_head.num_classes == num_classes
        # every tower that meets the text embeddings has their width, the backbone's
        embed_dim = model.backbone.embed_dim
        assert embed_dim == cfg.model.backbone.output_dim
        assert model.text_encoder.text_projection.shape[1] == embed_dim
        if model.context_decoder is not None:
            assert model.context_decoder.visual_dim == embed_dim == model.gamma.shape[0]
        if model.pre_prompter is not None:
            assert model.pre_prompter.decoder.visual_dim == embed_dim
        # the configs state the backbone's channels; the segmentor added K at one level
        given = cfg.model.neck if cfg.model.get('neck') else cfg.model.decode_head
        built = model.neck if model.with_neck else model.decode_head
        expected = list(given.in_channels)
        expected[cfg.model.score_concat_index] += num_classes
        assert list(built.in_channels) == expected

    features = backbone_levels(model, num_classes)
    if model.with_neck:
        assert list(model.neck.in_channels) == [level.shape[1] for level in features]
        with torch.no_grad():
            features = list(model.neck(features))
    for head in heads:
        for index, channels in head_channels(head):
            assert features[index].shape[1] == channels, (type(head).__name__, index)


@pytest.mark.parametrize('ablation', sorted(ABLATIONS))
def test_ablation_changes_only_prompting(ablation: str):
    parent = flatten(load(MAIN_RN50).to_dict())
    child = flatten(load(ablation).to_dict())
    assert set(child) == set(parent)
    changed = {key: child[key] for key in child if child[key] != parent[key]}
    assert changed == ABLATIONS[ablation]


def test_rn101_changes_only_the_tower():
    parent = flatten(load(MAIN_RN50).to_dict())
    child = flatten(load(MAIN_RN101).to_dict())
    assert set(child) == set(parent)
    changed = {key: child[key] for key in child if child[key] != parent[key]}
    assert changed == RN101_CHANGES


@pytest.mark.parametrize('variant', sorted(ACCUMULATION_VARIANTS))
def test_accumulation_variant_scales_every_iteration_count(variant: str):
    """Only accumulation, checkpointing, norms and iteration counts (x accumulation) change."""
    parent, child = load(MAIN_RN50), load(variant)
    steps = child.optim_wrapper.accumulative_counts
    assert steps == child.accumulation > 1
    scaled = ('max_iters', 'warmup_iters', 'eval_interval', 'train_cfg.max_iters',
              'train_cfg.val_interval', 'default_hooks.logger.interval',
              'default_hooks.checkpoint.interval')
    flat_parent, flat_child = flatten(parent.to_dict()), flatten(child.to_dict())
    for key in scaled:
        assert flat_child[key] == flat_parent[key] * steps, key
        assert flat_child[key] % steps == 0, key  # checkpoints and logs fall between steps
    (scheduler, ), (parent_scheduler, ) = child.param_scheduler, parent.param_scheduler
    moved = dict(warmup_iters=parent_scheduler.warmup_iters * steps, begin=steps - 1,
                 end=steps - 1 + parent_scheduler.end * steps)
    assert scheduler == dict(parent_scheduler, **moved)
    changed = {key for key in set(flat_child) | set(flat_parent)
               if flat_child.get(key) != flat_parent.get(key)}
    assert changed == set(scaled) | {
        'accumulation', 'optim_wrapper.accumulative_counts', 'param_scheduler',
        'model.backbone.with_cp', 'model.text_encoder.with_cp'} | set(
            ACCUMULATION_VARIANTS[variant])
    assert flat_child['model.backbone.with_cp'] and flat_child['model.text_encoder.with_cp']
    for key, value in ACCUMULATION_VARIANTS[variant].items():
        assert flat_child[key] == value


@pytest.mark.parametrize('denseclip_config, baseline', SWIN_PAIRS)
def test_denseclip_swin_matches_its_baseline(denseclip_config: str, baseline: str):
    """Table 5 compares like with like: same Swin, heads, statistics and test protocol."""
    ours, theirs = load(denseclip_config).to_dict(), load(baseline).to_dict()
    assert ours['model']['backbone']['backbone'] == theirs['model']['backbone']
    assert ours['model']['backbone']['in_channels'] == theirs['model']['backbone'][
        'embed_dims'] * 2**(len(theirs['model']['backbone']['depths']) - 1)
    for key in ('decode_head', 'auxiliary_head'):
        ours_head, theirs_head = ours['model'][key], theirs['model'][key]
        assert ours_head.pop('num_classes') in (None, theirs_head.pop('num_classes'))
        assert ours_head == theirs_head, key
    for key in ('data_preprocessor', 'test_cfg'):
        assert ours['model'][key] == theirs['model'][key], key
    for key in ('crop_size', 'train_dataloader', 'val_dataloader', 'test_dataloader',
                'optim_wrapper', 'param_scheduler', 'train_cfg'):
        assert ours[key] == theirs[key], key


@pytest.mark.parametrize('path', sorted((CONFIG_DIR / 'quickstart').glob('*.py')),
                         ids=lambda path: path.name)
def test_quickstart_uses_synthetic_classes(path: Path):
    """The quickstart's metainfo is what tools/make_synthetic_data.py writes (8 classes)."""
    cfg = Config.fromfile(str(path))
    expected = synthetic_metainfo(8)
    for split in ('train', 'val', 'test'):
        metainfo = cfg[f'{split}_dataloader'].dataset.metainfo
        assert tuple(metainfo['classes']) == expected['classes']
        assert [list(color) for color in metainfo['palette']] == expected['palette']
    assert fill_class_names(cfg).model.class_names == list(expected['classes'])
