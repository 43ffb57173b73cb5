"""tools/zero_shot.py end to end through its CLI, with a tiny random CLIP and 64 px images."""
import json
import re
import warnings

import numpy as np
import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from PIL import Image

from denseclip.clip import CLIP, PHOTO_TEMPLATES, ZeroShotClassifier, load, tokenize
from denseclip.clip.preprocess import preprocess, read_image_rgb

#: A ResNet CLIP of width 8 at 64 px with a one-layer text tower of width 64 (one head).
TINY_CLIP = dict(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=8,
                 vision_patch_size=None, context_length=77, vocab_size=49408,
                 transformer_width=64, transformer_heads=1, transformer_layers=1)
CLASSES = ['cat', 'dog', 'car']

pytestmark = pytest.mark.usefixtures('single_thread')  # tests/conftest.py


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """A TorchScript archive of a tiny ResNet CLIP traced whole (as OpenAI's are), a
    tools/train.py-style checkpoint of the same weights under ``clip.``, and an ImageFolder tree
    (two classes, one corrupt image)."""
    root = tmp_path_factory.mktemp('zero_shot')
    torch.manual_seed(0)
    model = CLIP(**TINY_CLIP).eval()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.jit.trace(model, (torch.randn(1, 3, 64, 64), tokenize(['a cat']))).save(
            str(root / 'RN-tiny.pt'))
    torch.save({'meta': {'iter': 10, 'seed': np.int64(0)},
                'state_dict': {f'clip.{key}': value for key, value in model.state_dict().items()},
                'message_hub': {'log_scalars': {'train/loss': HistoryBuffer([1.0, 0.5], [1, 1])}}},
               root / 'iter_10.pth')
    rng = np.random.default_rng(0)
    for name, count in (('cat', 2), ('dog', 3)):
        (root / 'tree' / name).mkdir(parents=True)
        for index in range(count):
            pixels = rng.integers(0, 256, (48 + 8 * index, 64, 3), np.uint8)
            Image.fromarray(pixels).save(root / 'tree' / name / f'{index}.png')
    (root / 'tree' / 'dog' / 'broken.jpg').write_bytes(b'\xff\xd8\xff not a jpeg')
    return root


def expected_probabilities(archive, images, classes=CLASSES,
                           templates=PHOTO_TEMPLATES) -> torch.Tensor:
    """What the tool should print, computed in this process: ``[N, K]`` probabilities."""
    model = load(archive)
    classifier = ZeroShotClassifier.from_clip(model, classes, templates)
    batch = torch.stack([preprocess(read_image_rgb(path), 64) for path in images])
    with torch.no_grad():
        return classifier(model.encode_image(batch)).softmax(dim=-1)


def printed_top(output: str, image) -> list[tuple[str, float]]:
    line = next(line for line in output.splitlines() if line.startswith(f'{image}: '))
    return [(name, float(p)) for name, p in re.findall(r'(\w+) ([0-9.]+)', line.split(': ')[1])]


@pytest.mark.parametrize('checkpoint', ['RN-tiny.pt', 'iter_10.pth'])
def test_images_by_path(run_tool, workspace, checkpoint):
    images = ['tree/cat/0.png', 'tree/dog/2.png']
    proc = run_tool('zero_shot.py', checkpoint, *images, '--classes', 'cat, dog,car', '--topk',
                    2, cwd=workspace)
    assert proc.returncode == 0, proc.output
    expected = expected_probabilities(workspace / 'RN-tiny.pt', [workspace / i for i in images])
    for image, row in zip(images, expected):
        top = printed_top(proc.output, image)
        assert len(top) == 2
        values, indices = row.topk(2)
        assert [name for name, _ in top] == [CLASSES[i] for i in indices]
        np.testing.assert_allclose([p for _, p in top], values.numpy(), atol=6e-4)


def test_image_folder_with_a_corrupt_image(run_tool, workspace):
    (workspace / 'templates.txt').write_text('# two prompts\na photo of a {}.\n{}, a picture\n')
    proc = run_tool('zero_shot.py', 'RN-tiny.pt', '--folder', 'tree', '--templates',
                    'templates.txt', '--out-dir', 'out', cwd=workspace)
    assert proc.returncode == 1, proc.output
    assert 'tree/dog/broken.jpg: not a readable image' in proc.output
    assert proc.last_line == '1 of 6 images could not be read: tree/dog/broken.jpg'
    summary = json.loads((workspace / 'out' / 'summary.json').read_text())
    assert summary['num_images'] == 5 and summary['class_names'] == ['cat', 'dog']
    assert summary['skipped'] == ['tree/dog/broken.jpg']
    images = [f'tree/cat/{i}.png' for i in range(2)] + [f'tree/dog/{i}.png' for i in range(3)]
    expected = expected_probabilities(workspace / 'RN-tiny.pt', [workspace / i for i in images],
                                      ['cat', 'dog'], ['a photo of a {}.', '{}, a picture'])
    predicted = expected.argmax(dim=1)
    labels = torch.tensor([0, 0, 1, 1, 1])
    assert summary['top1'] == pytest.approx((predicted == labels).float().mean().item())
    assert summary['top5'] == 1 and summary['topk_used'] == 2 and summary['chance'] == 0.5
    assert summary['per_class']['cat'] == pytest.approx((predicted[:2] == 0).float().mean())
    assert sum(map(sum, summary['confusion'])) == 5
    assert f"top-1 {summary['top1']:.2%}, top-2 100.00%, chance 50.00%" in proc.output
    with Image.open(workspace / 'out' / 'confusion.png') as picture:
        assert picture.format == 'PNG' and min(picture.size) > 100


def test_clear_errors(run_tool, workspace):
    proc = run_tool('zero_shot.py', 'RN-tiny.pt', '--folder', 'tree', '--classes', 'cat,bird',
                    cwd=workspace)
    assert proc.returncode != 0
    assert "folders that are no class: ['dog']; classes without a folder: ['bird']" in proc.output
    proc = run_tool('zero_shot.py', 'RN-tiny.pt', 'tree/cat/0.png', '--classes', 'cat',
                    '--template', 'a photo', cwd=workspace)
    assert proc.returncode != 0 and "exactly once, found 0 in 'a photo'" in proc.last_line
    proc = run_tool('zero_shot.py', 'RN-tiny.pt', 'tree/cat/0.png', cwd=workspace)
    assert proc.returncode == 2 and 'needs --classes or --classes-file' in proc.last_line
