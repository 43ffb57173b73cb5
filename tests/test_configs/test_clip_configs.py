"""The contrastive CLIP configs (configs/clip/): named as STYLE.md says, their architectures are
exactly OpenAI's (key lists of RN50.pt and ViT-B-16.pt), fine-tuning configs point at those
archives, and the tiny config trains through tools/train.py.

Full-size models are built on the meta device (no memory, no time); no weights are read.
"""
import json
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import denseclip  # noqa: F401  (registers the dataset and transforms)
import denseclip.models.clip_contrastive  # noqa: F401  (registers the model)
from denseclip.engine.config import prepare_config
from denseclip.models.clip_contrastive import CLIPContrastive

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / 'configs' / 'clip').glob('*.py'))
IDS = [path.name for path in CONFIGS]
TINY = ROOT / 'configs' / 'clip' / 'clip_tiny-r_1xb32-0.3k_synthetic-captions-128x128.py'
#: clip_{backbone}_{gpus}xb{batch}-{iters}k_{dataset}-{height}x{width}.py
NAME = re.compile(r'clip_(?P<backbone>[a-z0-9-]+)_(?P<gpus>\d+)xb(?P<batch>\d+)'
                  r'-(?P<iters>[\d.]+)k_(?P<dataset>[a-z-]+)-(?P<height>\d+)x(?P<width>\d+)\.py')
#: The OpenAI archive whose architecture each backbone name stands for.
ARCHIVES = {'r50': 'RN50', 'vit-b-16': 'ViT-B-16'}
ARCHIVE_METADATA = ('input_resolution', 'context_length', 'vocab_size')


def test_the_folder_holds_fine_tuning_scratch_and_tiny_configs():
    assert {'clip_r50_8xb128-10k_image-text-224x224.py',
            'clip_r50-scratch_8xb128-10k_image-text-224x224.py',
            'clip_vit-b-16_8xb128-10k_image-text-224x224.py',
            'clip_vit-b-16-scratch_8xb128-10k_image-text-224x224.py', TINY.name} <= set(IDS)


@pytest.mark.parametrize('path', CONFIGS, ids=IDS)
def test_name_matches_the_config(path):
    match = NAME.fullmatch(path.name)
    assert match, f'{path.name} is not named clip_BACKBONE_GPUSxbBATCH-ITERSk_DATASET-HxW.py'
    cfg = Config.fromfile(path)
    assert cfg.train_dataloader.batch_size == int(match['batch'])
    assert cfg.train_cfg.max_iters == round(float(match['iters']) * 1000)
    assert match['height'] == match['width']
    crops = [step['size'] for step in cfg.train_dataloader.dataset.pipeline if 'size' in step]
    assert crops == [int(match['height'])] == [cfg.model.arch.image_resolution]
    assert cfg.train_dataloader.drop_last, 'every rank must gather the same number of pairs'
    assert cfg.model.type == 'CLIPContrastive' and cfg.get('val_cfg') is None


@pytest.mark.parametrize('path', [p for p in CONFIGS if p != TINY], ids=[i for i in IDS
                                                                        if i != TINY.name])
def test_architecture_is_openai_clip(path, reference_keys):
    """The model's keys and shapes are those of the OpenAI archive the name stands for, and
    fine-tuning configs load that archive (scratch configs none)."""
    backbone = NAME.fullmatch(path.name)['backbone']
    archive = ARCHIVES[backbone.removesuffix('-scratch')]
    cfg = Config.fromfile(path)
    with torch.device('meta'):
        model = CLIPContrastive(**{k: v for k, v in cfg.model.items() if k != 'type'})
    own = {key.removeprefix('clip.'): tuple(value.shape)
           for key, value in model.state_dict().items()}
    expected = {key: shape for key, (shape, _) in reference_keys(f'openai_clip_{archive}').items()
                if key not in ARCHIVE_METADATA}
    assert own == expected
    if backbone.endswith('-scratch'):
        assert cfg.model.pretrained is None
        assert cfg.optim_wrapper.optimizer.lr == 5e-4  # the CLIP paper's, from scratch
    else:
        assert cfg.model.pretrained == f'pretrained/{archive}.pt'


def test_vit_configs_take_the_papers_adam_settings():
    for path in CONFIGS:
        optimizer = Config.fromfile(path).optim_wrapper.optimizer
        vit = 'vit' in path.name
        assert (optimizer.betas, optimizer.eps) == (((0.9, 0.98), 1e-6) if vit else
                                                    ((0.9, 0.999), 1e-8)), path.name


def test_prepare_config_leaves_a_non_segmentor_alone(tmp_path):
    """No class names are filled in, and the image-text dataset (which checks its own files)
    is not wrapped in the segmentation checks."""
    cfg = prepare_config(TINY, work_dir=str(tmp_path), check_data=True)
    assert 'class_names' not in cfg.model
    assert cfg.train_dataloader.dataset.type == 'ImageTextDataset'


def write_captions(root: Path, count: int = 8) -> Path:
    """Synthetic scenes with captions, 64 px, as tools/make_synthetic_data.py writes them."""
    from denseclip.datasets import generate_synthetic_ade20k
    data_root = generate_synthetic_ade20k(root, num_train=count, num_val=2, image_size=64)
    lines = (data_root / 'captions' / 'training.jsonl').read_text().splitlines()
    assert len(lines) == count and json.loads(lines[0])['caption']
    return data_root


def train_tiny(data_root: Path, work_dir: Path, run_tool) -> tuple[list, dict]:
    """Three iterations of the tiny config through tools/train.py: the logged (step, loss,
    accuracy, logit scale) and the checkpoint."""
    proc = run_tool('train.py', TINY, '--work-dir', work_dir, '--cfg-options',
                    f'train_dataloader.dataset.data_root={data_root}',
                    'train_dataloader.batch_size=4', 'train_cfg.max_iters=3',
                    'default_hooks.logger.interval=1', cwd=work_dir.parent)
    assert proc.returncode == 0, proc.output[-3000:]
    logged = re.findall(r'Iter\(train\) \[(\d)/3\].*loss_contrastive: ([\d.]+)\s+accuracy: '
                        r'([\d.]+)\s+logit_scale: ([\d.]+)', proc.output)
    checkpoint = torch.load(work_dir / 'iter_3.pth', map_location='cpu', weights_only=False)
    return logged, checkpoint


def test_tiny_config_trains_through_the_cli_reproducibly(tmp_path, run_tool):
    data_root = write_captions(tmp_path / 'data')
    logged, checkpoint = train_tiny(data_root, tmp_path / 'work', run_tool)
    assert [int(step) for step, *_ in logged] == [1, 2, 3]
    assert all(float(loss) > 0 for _, loss, _, _ in logged)
    assert float(logged[0][3]) == pytest.approx(1 / 0.07, abs=1e-3)
    assert 'clip.visual.attnpool.c_proj.weight' in checkpoint['state_dict']
    # the config's seed (randomness.seed): a second run draws the same samples and crops
    assert Config.fromfile(TINY).randomness.seed == checkpoint['meta']['seed'] == 0
    again, checkpoint_again = train_tiny(data_root, tmp_path / 'again', run_tool)
    assert again == logged
    for key, value in checkpoint['state_dict'].items():
        assert torch.equal(checkpoint_again['state_dict'][key], value), key
