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
    'tiny-r': (dict(type='CLIPResNetWithAttention', layers=(1, 1, 1, 1), width=8), None, 32),
}
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
    assert model.text_encoder.context_length == 77  # CLIP's prompts, no learned contexts
    assert model.out_channels == len(DATASETS[name['dataset']])
    assert not any(parameter.requires_grad for parameter in model.parameters())


def test_rn101_is_rn50_with_the_deeper_tower():
    rn50 = Config.fromfile(CONFIG_DIR / 'zero-shot_clip-r50_ade20k-512x512.py')
    rn101 = Config.fromfile(CONFIG_DIR / 'zero-shot_clip-r101_ade20k-512x512.py')
    rn50.model.pretrained = 'pretrained/RN101.pt'
    rn50.model.backbone.update(layers=(3, 4, 23, 3), output_dim=512)
    assert rn50.to_dict() == rn101.to_dict()
