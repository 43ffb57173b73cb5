"""Every config under ``configs/open_clip/`` loads, is named as STYLE.md says, takes the weights
and the image statistics of the open_clip checkpoint it names, builds, and has the FLOPs and
parameters that docs/open_clip.md states.

The naming and build checks are those of tests/test_configs/test_configs.py (read from its
file: tests/test_configs is not a package), which leaves this folder out (its ``OWN_TESTS``):
an open_clip backbone has no ``output_dim`` key (its width is the architecture's), its text
tower is ``text_encoder.text``, and building it needs open_clip. The full-size models are built
on the CPU (2-4 s each); the FLOPs of ViT-B/16 and ConvNeXt-B are counted at 1024 x 1024
(~30 and ~20 s on one thread). ViT-L/14's count takes ~100 s, so only its parameters are
checked here; its FLOPs row comes from the same counting code (tools/get_flops.py).
"""
import importlib.util
import re
from pathlib import Path

import open_clip
import pytest
import torch
from mmengine.config import Config

import denseclip
from denseclip.analysis.flops import count_flops, count_params
from denseclip.engine.config import build_segmentor, prepare_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / 'configs' / 'open_clip'
CONFIGS = sorted(CONFIG_DIR.glob('*.py'))
IDS = [path.name for path in CONFIGS]

_spec = importlib.util.spec_from_file_location(
    'config_checks', ROOT / 'tests' / 'test_configs' / 'test_configs.py')
config_checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(config_checks)

#: The backbone part of a file name: ``openclip-{architecture}-{training data}``.
BACKBONE = re.compile(r'openclip-(?P<architecture>[a-z0-9-]+?)-(?P<data>laion2b|datacomp-xl)')
#: Architecture in a file name -> open_clip's name of it.
ARCHITECTURES = {'vit-b-16': 'ViT-B-16', 'vit-l-14': 'ViT-L-14', 'convnext-b-w': 'convnext_base_w'}
#: docs/open_clip.md, "FLOPs and parameters": one 1024 x 1024 image, the cached text encoder
#: left out; (GFLOPs, params M, text encoder GFLOPs, text encoder params M). None: not counted
#: here (ViT-L/14: ~100 s).
PAPER_STYLE_COUNTS = {
    'ViT-B-16': (869.2, 104.8, 74.1, 63.4),
    'ViT-L-14': (None, 329.1, None, 123.6),
    'convnext_base_w': (455.7, 98.9, 115.6, 91.1),
}
#: Each architecture once: the DataComp-XL configs are their LAION-2B sibling with other
#: weights (test_datacomp_config_is_its_laion_sibling_with_other_weights).
COUNTED = {name: CONFIG_DIR / f'denseclip_openclip-{arch}-laion2b_fpn_8xb4-80k_ade20k-512x512.py'
           for arch, name in ARCHITECTURES.items()}


def parts(path: Path) -> tuple[str, str]:
    """``(open_clip architecture, training data)`` that the file name states."""
    backbone = config_checks.NAME.fullmatch(path.name)['backbone']
    match = BACKBONE.fullmatch(backbone)
    assert match, f'{path.name}: backbone {backbone!r} does not follow {BACKBONE.pattern}'
    return ARCHITECTURES[match['architecture']], match['data']


def test_configs_found():
    assert len(CONFIGS) == 5
    assert {parts(path)[0] for path in CONFIGS} == set(ARCHITECTURES.values())
    assert 'open_clip' in config_checks.OWN_TESTS  # checked here, not there


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_name_matches_config(path: Path):
    """The file name's batch, iterations, dataset and crop (test_configs' check)."""
    config_checks.test_name_matches_config(path)


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_towers_weights_and_statistics_are_the_named_checkpoints(path: Path):
    """Both towers are the named architecture; the weights are an open_clip release of it
    from that data, under pretrained/open_clip/; images are normalised as it was trained."""
    model_name, data = parts(path)
    model = Config.fromfile(str(path)).model
    assert model.backbone.type == 'OpenCLIPVisionBackbone'
    assert model.text_encoder.type == 'OpenCLIPTextContextEncoder'
    assert model.backbone.model_name == model.text_encoder.model_name == model_name
    weights = Path(model.pretrained)
    assert weights.parent == Path('pretrained/open_clip') and weights.suffix == '.safetensors'
    prefix = f'{model_name}_'
    assert weights.stem.startswith(prefix), weights
    tag = weights.stem[len(prefix):]
    assert tag.startswith(data.replace('-', '_') + '_'), (tag, data)
    assert tag in open_clip.list_pretrained_tags_by_model(model_name)
    trained_with = open_clip.get_pretrained_cfg(model_name, tag)
    preprocessor = model.data_preprocessor
    assert preprocessor.mean == pytest.approx([value * 255 for value in trained_with['mean']])
    assert preprocessor.std == pytest.approx([value * 255 for value in trained_with['std']])
    assert preprocessor.bgr_to_rgb


@pytest.mark.parametrize('path', [path for path in CONFIGS if 'datacomp-xl' in path.name],
                         ids=lambda path: path.name)
def test_datacomp_config_is_its_laion_sibling_with_other_weights(path: Path):
    sibling = path.with_name(path.name.replace('datacomp-xl', 'laion2b'))
    ours = config_checks.flatten(Config.fromfile(str(path)).to_dict())
    theirs = config_checks.flatten(Config.fromfile(str(sibling)).to_dict())
    assert set(ours) == set(theirs)
    changed = {key for key in ours if ours[key] != theirs[key]}
    expected = {'model.pretrained'}
    if theirs['model.data_preprocessor.mean'] != ours['model.data_preprocessor.mean']:
        expected |= {'model.data_preprocessor.mean', 'model.data_preprocessor.std'}  # ViT-L/14
    assert changed == expected


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_build(path: Path):
    """Builds the model (weights not loaded); classes, widths and channels agree end to end,
    with a 64 x 64 image through the backbone and neck (test_configs' check)."""
    cfg = prepare_config(path, device='cpu')  # SyncBN -> BN: torch's refuses CPU tensors
    torch.manual_seed(0)
    model = build_segmentor(cfg)
    assert isinstance(model, denseclip.models.DenseCLIP)
    num_classes = len(model.class_names)
    assert num_classes == 150  # ADE20K's, from the dataset metainfo
    for head in (model.decode_head, model.identity_head):
        assert head.num_classes == num_classes
    embed_dim = model.backbone.embed_dim  # the architecture's, in both towers
    assert embed_dim == model.text_encoder.embed_dim == open_clip.get_model_config(
        cfg.model.backbone.model_name)['embed_dim']
    assert model.context_decoder.visual_dim == embed_dim == model.gamma.shape[0]
    assert model.contexts.shape[-1] == model.text_encoder.width
    expected = list(cfg.model.neck.in_channels)
    assert expected == list(model.backbone.out_channels)
    expected[cfg.model.score_concat_index] += num_classes
    assert list(model.neck.in_channels) == expected

    features = config_checks.backbone_levels(model, num_classes)
    assert list(model.neck.in_channels) == [level.shape[1] for level in features]
    with torch.no_grad():
        features = list(model.neck(features))
    for index, channels in config_checks.head_channels(model.decode_head):
        assert features[index].shape[1] == channels


@pytest.mark.parametrize('model_name', sorted(COUNTED))
def test_flops_and_parameters_are_the_documented_ones(model_name: str):
    """docs/open_clip.md's row within 1%; the text encoder is counted but left out."""
    gflops, params_m, text_gflops, text_params_m = PAPER_STYLE_COUNTS[model_name]
    torch.manual_seed(0)
    model = build_segmentor(prepare_config(COUNTED[model_name], device='cpu'))
    if gflops is None:
        counts = count_params(model)
    else:
        report = count_flops(model, (1024, 1024))
        assert report.excluded == ('text_encoder', )
        assert report.gflops == pytest.approx(gflops, rel=0.01)
        assert report.per_module_gflops['text_encoder'] == pytest.approx(text_gflops, rel=0.01)
        counts = report.to_dict()
    assert counts['params_m'] == pytest.approx(params_m, rel=0.01)
    assert counts['per_module_params_m']['text_encoder'] == pytest.approx(text_params_m,
                                                                          rel=0.01)
