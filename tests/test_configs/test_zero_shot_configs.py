"""Every config under ``configs/zero_shot/`` loads, is named for its backbone, dataset and crop,
and builds a zero-shot segmentor whose parts agree (no weights are loaded).

The full-size towers are built on the CPU (about 1 s each); the text classifier of ADE20K's 150
names (2 100 prompts through CLIP's text tower) is not computed.
"""
import re
from pathlib import Path

import pytest
from mmengine.config import Config
from mmseg.datasets import ADE20KDataset
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules

import denseclip  # noqa: F401  (registers the DenseCLIP modules)
from denseclip.apis.inference import takes_clip_archive
from denseclip.datasets import synthetic_metainfo
from denseclip.engine.config import prepare_config
from denseclip.models import ZeroShotCLIPSegmentor

register_all_modules(init_default_scope=True)

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / 'configs' / 'zero_shot'
CONFIGS = sorted(CONFIG_DIR.glob('*.py'))
IDS = [path.name for path in CONFIGS]
#: STYLE.md's {method}_{backbone}_..._{dataset}-{crop}.py without neck, GPUs and iterations:
#: there is no decoder and no training.
NAME = re.compile(r'zero-shot_clip-(?P<backbone>[a-z0-9-]+)_(?P<dataset>[a-z0-9]+)'
                  r'-(?P<height>\d+)x(?P<width>\d+)\.py')
#: backbone name -> (backbone keys, CLIP archive, embedding width)
BACKBONES = {
    'r50': (dict(type='CLIPResNetWithAttention', layers=(3, 4, 6, 3)), 'pretrained/RN50.pt',
            1024),
    'r101': (dict(type='CLIPResNetWithAttention', layers=(3, 4, 23, 3)), 'pretrained/RN101.pt',
             512),
    'vit-b': (dict(type='CLIPVisionTransformer', width=768, layers=12, patch_size=16),
              'pretrained/ViT-B-16.pt', 512),
    'tiny-r': (dict(type='CLIPResNetWithAttention', layers=(1, 1, 1, 1), width=16), None, 64),
}
#: The tiny CLIP that configs/clip/ trains; the tiny zero-shot config must be its towers.
TINY_CLIP = ROOT / 'configs' / 'clip' / 'clip_tiny-r_1xb32-0.3k_synthetic-captions-128x128.py'
TINY = CONFIG_DIR / 'zero-shot_clip-tiny-r_synthetic-128x128.py'
DATASETS = {'ade20k': ADE20KDataset.METAINFO['classes'],
            'synthetic': synthetic_metainfo(8)['classes']}


def test_configs_found():
    assert {NAME.fullmatch(path.name)['backbone'] for path in CONFIGS} == set(BACKBONES)


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_config_builds(path: Path):
    name = NAME.fullmatch(path.name)
    assert name, f'{path.name} does not follow {NAME.pattern}'
    cfg = prepare_config(path, device='cpu')  # class names from the dataset, as the tools do
    assert cfg.model.type == 'ZeroShotCLIPSegmentor' and takes_clip_archive(cfg)
    backbone, archive, embed_dim = BACKBONES[name['backbone']]
    assert cfg.model.pretrained == archive
    assert cfg.train_dataloader is None and cfg.test_cfg.type == 'TestLoop'
    # torch's DDP refuses a model without trainable parameters (tools/dist_test.sh)
    assert cfg.model_wrapper_cfg.type == 'MMSeparateDistributedDataParallel'
    assert cfg.model.class_names == list(DATASETS[name['dataset']])
    assert cfg.test_dataloader.dataset.reduce_zero_label  # label 0 ("other") ignored
    if cfg.model.test_cfg.mode == 'slide':  # windows of the crop in the name
        assert tuple(cfg.model.test_cfg.crop_size) == (int(name['height']), int(name['width']))
    else:
        assert name['dataset'] == 'synthetic'
    model = MODELS.build(cfg.model)
    assert isinstance(model, ZeroShotCLIPSegmentor)
    assert {key: cfg.model.backbone[key] for key in backbone} == backbone
    assert model.backbone.embed_dim == model.text_encoder.embed_dim == embed_dim
    if archive is not None:  # CLIP's prompts, no learned contexts (the tiny CLIP: its own)
        assert model.text_encoder.context_length == 77
    assert model.out_channels == len(DATASETS[name['dataset']])
    assert not any(parameter.requires_grad for parameter in model.parameters())


def test_rn101_is_rn50_with_the_deeper_tower():
    rn50 = Config.fromfile(CONFIG_DIR / 'zero-shot_clip-r50_ade20k-512x512.py')
    rn101 = Config.fromfile(CONFIG_DIR / 'zero-shot_clip-r101_ade20k-512x512.py')
    rn50.model.pretrained = 'pretrained/RN101.pt'
    rn50.model.backbone.update(layers=(3, 4, 23, 3), output_dim=512)
    assert rn50.to_dict() == rn101.to_dict()


def test_tiny_config_is_the_tiny_clip_config_at_the_scenes_size():
    """tools/test.py takes a checkpoint of the tiny CLIP config as it is: no --cfg-options."""
    arch = Config.fromfile(TINY_CLIP).model.arch
    model = Config.fromfile(TINY).model
    backbone, text = model.backbone, model.text_encoder
    assert arch.vision_patch_size is None  # a ResNet
    assert (tuple(backbone.layers), backbone.width, backbone.output_dim,
            backbone.input_resolution) == (tuple(arch.vision_layers), arch.vision_width,
                                           arch.embed_dim, arch.image_resolution)
    assert (text.context_length, text.transformer_width, text.transformer_heads,
            text.transformer_layers) == (arch.context_length, arch.transformer_width,
                                         arch.transformer_heads, arch.transformer_layers)
    # the whole 128 px scenes are the input, the size the CLIP was trained at
    cfg = prepare_config(TINY, device='cpu')
    assert cfg.model.test_cfg.mode == 'whole'
    resize = [step for step in cfg.test_dataloader.dataset.pipeline if step.type == 'Resize']
    assert [tuple(step.scale) for step in resize] == [(arch.image_resolution,) * 2]
    assert NAME.fullmatch(TINY.name)['height'] == str(arch.image_resolution)


def test_tiny_config_loads_a_checkpoint_of_the_tiny_clip_config(tmp_path):
    """The contrastive model's state dict, as tools/train.py saves it, fills every tensor of
    the segmentor's towers, and the segmentor labels a 128 px scene."""
    import torch

    from denseclip.apis.inference import init_model
    arch = Config.fromfile(TINY_CLIP).model.arch
    torch.manual_seed(0)
    clip_model = MODELS.build(dict(type='CLIPContrastive', arch=arch))
    path = tmp_path / 'iter_1.pth'
    torch.save({'state_dict': clip_model.state_dict(), 'meta': {}}, path)
    model = init_model(str(TINY), str(path), device='cpu')
    torch.testing.assert_close(model.backbone.attnpool.c_proj.weight,
                               clip_model.clip.visual.attnpool.c_proj.weight)
    side = arch.image_resolution
    with torch.no_grad():
        logits = model.eval()._forward(torch.randn(1, 3, side, side))
    assert logits.shape == (1, len(DATASETS['synthetic']), side // 32, side // 32)
