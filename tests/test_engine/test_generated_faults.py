"""Generated bad inputs (Hypothesis): configs, checkpoints and label maps mutated at random
under a fixed seed, each held to the contract of docs/robustness.md: a clear error that names
the config key or the file, or a correct run — never a library's traceback, never a silent
change.

The budget is small by default (40 to 200 examples a test, about 20 s on 2 cores);
``DENSECLIP_FUZZ_EXAMPLES=1000`` runs that many of each. The draws are derandomised: the same
examples every run, so that CI is repeatable.
"""
import copy
import os
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image

from denseclip.clip import CheckpointError
from denseclip.datasets import CheckedDataset, DataError, generate_synthetic_ade20k
from denseclip.engine.checks import (ConfigError, _config_roots, _lookup, _typed_dicts,
                                     accepted_arguments)
from denseclip.engine.config import build_segmentor, prepare_config
from denseclip.engine.safe_load import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
PACKAGE = str(ROOT / 'denseclip')
EXAMPLES = int(os.environ.get('DENSECLIP_FUZZ_EXAMPLES', 0)) or None


def budget(default: int):
    return settings(max_examples=EXAMPLES or default, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow], database=None)


def raised_by_the_project(err: BaseException) -> bool:
    """The innermost frame is the project's own code: the message is in its words."""
    return traceback.extract_tb(err.__traceback__)[-1].filename.startswith(PACKAGE)


# ----------------------------------------------------------------------------- configs
BASE = Config.fromfile(QUICKSTART)


def typed_dicts(cfg: Config) -> list:
    """(config path, dict, accepted arguments) of every registered class the config builds
    whose arguments can be known, in a fixed order."""
    return [(key, node, accepted)
            for root, tree, registry in _config_roots(cfg)
            for key, node, reg in _typed_dicts(tree, root, registry)
            if (cls := _lookup(reg, node['type'])) is not None
            and (accepted := accepted_arguments(cls)) is not None]


TYPED = typed_dicts(BASE)
#: Numbers of the run: (key, valid(value)).
NUMBERS = [
    ('train_dataloader.batch_size', lambda v: type(v) is int and v >= 1),
    ('val_dataloader.batch_size', lambda v: type(v) is int and v >= 1),
    ('train_dataloader.num_workers', lambda v: type(v) is int and v >= 0),
    ('train_cfg.max_iters', lambda v: type(v) is int and v >= 1),
    ('train_cfg.val_interval', lambda v: type(v) is int and v >= 1),
    ('default_hooks.logger.interval', lambda v: type(v) is int and v >= 1),
    ('randomness.seed', lambda v: v is None or type(v) is int and 0 <= v < 2**32),
]
VALUES = st.one_of(st.integers(-3, 3), st.floats(-2, 2), st.just(float('nan')), st.booleans(),
                   st.none(), st.sampled_from(['4', '', [2]]))


def misspell(name: str, how: int) -> str:
    if how == 0 or len(name) < 3:
        return name + 's'
    if how == 1:
        return name[:-1]
    return name[:1] + name[2] + name[1] + name[3:]  # two letters swapped


@budget(200)
@given(which=st.integers(0, len(TYPED) - 1), arg=st.integers(0, 50), how=st.integers(0, 2))
def test_a_misspelled_argument_is_named_with_its_path(which, arg, how):
    cfg = copy.deepcopy(BASE)
    key, node, accepted = typed_dicts(cfg)[which]
    names = sorted(name for name in node if name != 'type')
    if not names:
        return
    name = names[arg % len(names)]
    wrong = misspell(name, how)
    if wrong in accepted:  # a real argument after all (e.g. a plural): not a misspelling
        return
    node[wrong] = node.pop(name)
    with pytest.raises(ConfigError) as caught:
        prepare_config(cfg, device='cpu')
    assert f'{key}.{wrong}:' in str(caught.value)


@budget(200)
@given(which=st.integers(0, len(NUMBERS) - 1), value=VALUES)
def test_a_number_out_of_range_is_named_or_runs(which, value):
    key, valid = NUMBERS[which]
    cfg = copy.deepcopy(BASE)
    cfg.merge_from_dict({key: value})
    if valid(value):
        prepare_config(cfg, device='cpu')
        return
    with pytest.raises(ConfigError, match=f'^{key.replace(".", "[.]")}='):
        prepare_config(cfg, device='cpu')


# ----------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope='module')
def model_and_weights():
    cfg = prepare_config(copy.deepcopy(BASE), device='cpu')
    torch.manual_seed(0)
    model = build_segmentor(cfg)
    return model, {key: value.clone() for key, value in model.state_dict().items()}


MUTATIONS = ['nan', 'inf', 'shape', 'int64', 'float64', 'float16', 'rename', 'drop']


@budget(80)
@given(kind=st.sampled_from(MUTATIONS), which=st.integers(0, 10_000),
       where=st.integers(0, 10_000), wrapped=st.booleans())
def test_a_mutated_checkpoint_is_refused_naming_it_or_loads_exactly(
        model_and_weights, tmp_path_factory, kind, which, where, wrapped):
    model, weights = model_and_weights
    floating = sorted(key for key, value in weights.items() if value.is_floating_point())
    key = floating[which % len(floating)]
    state_dict = {name: value.clone() for name, value in weights.items()}
    tensor = state_dict[key]
    if kind in ('nan', 'inf'):
        tensor.view(-1)[where % tensor.numel()] = float(kind)
    elif kind == 'shape':
        state_dict[key] = torch.cat([tensor, tensor[:1]]) if tensor.dim() else tensor[None]
    elif kind in ('int64', 'float64', 'float16'):
        state_dict[key] = tensor.to(getattr(torch, kind))
    elif kind == 'rename':
        state_dict[key + 'x'] = state_dict.pop(key)
    else:
        del state_dict[key]
    path = tmp_path_factory.mktemp('ckpt') / 'mutated.pth'
    torch.save(dict(state_dict=state_dict) if wrapped else state_dict, path)
    if kind in ('float64', 'float16'):  # another precision of the same numbers: loads
        load_checkpoint(model, str(path))
        assert torch.equal(model.state_dict()[key], state_dict[key].float())
        model.load_state_dict(weights)
        return
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(model, str(path))
    assert str(path) in str(caught.value) and raised_by_the_project(caught.value)
    shown = key + 'x' if kind == 'rename' else key
    assert shown in str(caught.value)
    assert all(torch.equal(value, weights[name]) for name, value in model.state_dict().items())


# ----------------------------------------------------------------------------- label maps
@pytest.fixture(scope='module')
def dataset_root(tmp_path_factory) -> Path:
    return generate_synthetic_ade20k(tmp_path_factory.mktemp('labels'), num_classes=8,
                                     num_train=1, num_val=1, image_size=32, seed=0)


LABELS = ['value', 'size', 'rgb', 'uint16', 'palette']
#: The synthetic data is labelled with ADE20K's indices (1..150, 0 = other); the quickstart's
#: metainfo.classes picks the first 8.
ADE20K_CLASSES = 150


@budget(40)
@given(kind=st.sampled_from(LABELS), value=st.integers(9, 254))
def test_a_mutated_label_map_is_refused_naming_it_or_loads_exactly(dataset_root, kind, value):
    annotation = next((dataset_root / 'annotations' / 'validation').glob('*.png'))
    original = annotation.read_bytes()
    labels = np.array(Image.open(annotation))  # 0 = other, 1..8 = classes
    try:
        if kind == 'value':
            labels[0, 0] = value
            Image.fromarray(labels).save(annotation)
        elif kind == 'size':
            Image.fromarray(labels[:-1]).save(annotation)
        elif kind == 'rgb':
            Image.fromarray(np.stack([labels] * 3, axis=-1)).save(annotation)
        elif kind == 'uint16':
            Image.fromarray(labels.astype(np.uint16)).save(annotation)
        else:
            palette = Image.fromarray(labels, mode='L').convert('P')
            palette.save(annotation)
        cfg = copy.deepcopy(BASE.val_dataloader.dataset)
        cfg.data_root = str(dataset_root)
        with DefaultScope.overwrite_default_scope('mmseg'):
            dataset = CheckedDataset(cfg, cfg_key='val_dataloader.dataset')
        if kind == 'value' and value <= ADE20K_CLASSES:
            # an ADE20K class outside metainfo.classes: mmseg's label_map ignores it (255)
            loaded = dataset[0]['data_samples'].gt_sem_seg.data[0].numpy()
            assert loaded[0, 0] == 255
            return
        if kind in ('uint16', 'palette'):  # the same class indices in another PNG format
            sample = dataset[0]['data_samples']
            loaded = sample.gt_sem_seg.data[0].numpy()
            expected = np.where(labels == 0, 255, labels.astype(np.int64) - 1)
            resized = np.array(Image.fromarray(expected.astype(np.uint8)).resize(
                loaded.shape[::-1], Image.NEAREST))
            assert set(np.unique(loaded)) <= set(np.unique(resized))
            return
        with pytest.raises(DataError) as caught:
            dataset[0]
        assert str(annotation) in str(caught.value)
    finally:
        annotation.write_bytes(original)
