"""tools/test.py on the synthetic zero-shot config, with a tiny CLIP archive as CHECKPOINT.

The archive is TorchScript, as OpenAI's are: a tiny random CLIP of the config's shape (ResNet
width 8, one block per stage, 64 px; text tower width 64, two layers) traced whole.
"""
import re
import warnings
from pathlib import Path

import pytest
import torch

from denseclip.clip import CLIP, tokenize

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs/zero_shot/zero-shot_clip-tiny-r_synthetic-64x64.py'
#: The shape of the config's CLIP (as tests/test_clip/tiny.py's TINY_RN).
TINY_CLIP = dict(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=8,
                 vision_patch_size=None, context_length=77, vocab_size=49408,
                 transformer_width=64, transformer_heads=1, transformer_layers=2)


@pytest.fixture(scope='module')
def archive(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('clip') / 'RN-tiny.pt'
    torch.manual_seed(0)
    model = CLIP(**TINY_CLIP).eval()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # tracing warnings
        torch.jit.trace(model, (torch.randn(1, 3, 64, 64), tokenize(['a cat']))).save(str(path))
    return path


@pytest.fixture(scope='module')
def eval_options(synthetic_root) -> list[str]:
    """Points the config's test and val dataloaders at the synthetic data (tests' conftest)."""
    return ['--cfg-options'] + [f'{split}_dataloader.dataset.data_root={synthetic_root}'
                                for split in ('val', 'test')]


def test_clip_archive_as_checkpoint_reports_miou(run_tool, archive, eval_options, tmp_path):
    proc = run_tool('test.py', CONFIG, archive, '--work-dir', tmp_path / 'work', *eval_options,
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.output
    assert f'zero-shot segmentor: CLIP weights from {archive}' in proc.output
    assert 'loaded 123 tensors from' in proc.output  # the image tower, every tensor
    miou = re.search(r'mIoU: (\d+\.\d+)', proc.output)
    assert miou and 0 <= float(miou.group(1)) <= 100, proc.output
    for name in ('wall', 'sky', 'bed'):  # per-class table: the dataset's names
        assert re.search(rf'\|\s+{name}\s+\|', proc.output)


def test_not_a_clip_archive_is_refused(run_tool, eval_options, tmp_path):
    checkpoint = tmp_path / 'segmentor.pth'
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(4, 3, 3, 3)}}, checkpoint)
    proc = run_tool('test.py', CONFIG, checkpoint, *eval_options, cwd=tmp_path)
    assert proc.returncode != 0
    assert 'holds no visual tower of a CLIP model' in proc.output
    assert 'give that as the CHECKPOINT of tools/test.py' in proc.output
