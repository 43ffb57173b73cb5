"""tools/test.py on the synthetic zero-shot config, with a tiny CLIP archive as CHECKPOINT.

The archive is TorchScript, as OpenAI's are: a tiny random CLIP of the config's shape (the tiny
CLIP that configs/clip/ trains: ResNet width 16, one block per stage, 128 px; text tower width
64, two layers, 24 positions) traced whole. The same
weights saved as tools/train.py saves the contrastive CLIP model (an mmengine checkpoint with
``clip.`` keys, message hub and optimiser state) must give the same result.
"""
import re
import warnings
from pathlib import Path

import pytest
import torch

from mmengine.config import Config

from denseclip.clip import CLIP, load, tokenize

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs/zero_shot/zero-shot_clip-tiny-r_synthetic-128x128.py'
#: The shape of the config's CLIP: the tiny contrastive CLIP config's (a config test checks it).
TINY_CLIP = Config.fromfile(
    ROOT / 'configs/clip/clip_tiny-r_1xb32-0.3k_synthetic-captions-128x128.py').model.arch.to_dict()
SIDE = TINY_CLIP['image_resolution']


@pytest.fixture(scope='module')
def archive(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('clip') / 'RN-tiny.pt'
    torch.manual_seed(0)
    model = CLIP(**TINY_CLIP).eval()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # tracing warnings
        example = (torch.randn(1, 3, SIDE, SIDE),
                   tokenize(['a cat'], context_length=TINY_CLIP['context_length']))
        torch.jit.trace(model, example).save(str(path))
    return path


@pytest.fixture(scope='module')
def trained_checkpoint(archive) -> Path:
    """The archive's weights as a checkpoint of the contrastive CLIP model, saved the way
    mmengine's runner saves one."""
    from mmengine.logging import MessageHub
    from mmengine.registry import init_default_scope
    from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu
    from mmseg.registry import MODELS

    init_default_scope('mmseg')
    model = MODELS.build(dict(type='CLIPContrastive', arch=TINY_CLIP))
    model.clip.load_state_dict(load(archive).state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
    model.eval().clip.encode_image(torch.randn(1, 3, SIDE, SIDE)).sum().backward()
    optimizer.step()  # the optimiser state holds moment buffers; lr 0 keeps the weights
    hub = MessageHub.get_instance('zero-shot-segmentation-tool-test')
    hub.update_scalar('train/loss', 0.5)
    path = archive.parent / 'iter_10.pth'
    save_checkpoint(dict(meta=dict(epoch=0, iter=10, seed=0),
                         state_dict=weights_to_cpu(model.state_dict()),
                         message_hub=hub.state_dict(), optimizer=optimizer.state_dict()),
                    str(path))
    return path


@pytest.fixture(scope='module')
def eval_options(synthetic_root) -> list[str]:
    """Points the config's test and val dataloaders at the synthetic data (tests' conftest)."""
    return ['--cfg-options'] + [f'{split}_dataloader.dataset.data_root={synthetic_root}'
                                for split in ('val', 'test')]


def test_clip_weights_as_checkpoint_report_miou(run_tool, archive, trained_checkpoint,
                                                eval_options, tmp_path):
    results = []
    for checkpoint in (archive, trained_checkpoint):
        proc = run_tool('test.py', CONFIG, checkpoint, '--work-dir', tmp_path / 'work',
                        *eval_options, cwd=tmp_path)
        assert proc.returncode == 0, proc.output
        assert f'zero-shot segmentor: CLIP weights from {checkpoint}' in proc.output
        assert 'loaded 123 tensors from' in proc.output  # the image tower, every tensor
        miou = re.search(r'mIoU: (\d+\.\d+)', proc.output)
        assert miou and 0 <= float(miou.group(1)) <= 100, proc.output
        for name in ('wall', 'sky', 'bed'):  # per-class table: the dataset's names
            assert re.search(rf'\|\s+{name}\s+\|', proc.output)
        results.append((miou.group(1), re.findall(r'\|\s+\w+\s+\|[^\n]*', proc.output)))
    assert len(results[0][1]) >= 8  # a row per class (8) with its IoU and accuracy
    assert results[0] == results[1]  # the contrastive model's checkpoint: the same weights


def test_not_a_clip_archive_is_refused(run_tool, eval_options, tmp_path):
    checkpoint = tmp_path / 'segmentor.pth'
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(4, 3, 3, 3)}}, checkpoint)
    proc = run_tool('test.py', CONFIG, checkpoint, *eval_options, cwd=tmp_path)
    assert proc.returncode != 0
    assert f"'{checkpoint}' holds no CLIP model" in proc.output
    assert 'a checkpoint of the contrastive CLIP model' in proc.output  # what is expected
