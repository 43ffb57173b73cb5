"""``tools/check_dataset.py CONFIG``, run as a user runs it, on the quickstart config.

The data is a small synthetic dataset in ADE20K's layout (8 classes, 8 training and 3
validation images of 32 px, ``reduce_zero_label``): intact, the tool prints the counts and a
class histogram that agrees with the label files and exits 0; damaged in eight ways at once,
it lists every problem (not only the first) and exits 1.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from denseclip.datasets import generate_synthetic_ade20k, synthetic_metainfo

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
NUM_CLASSES, NUM_TRAIN, NUM_VAL = 8, 8, 3
TRAIN, VAL = 'train_dataloader.dataset', 'val_dataloader.dataset'
ROW = re.compile(r'^\s+(\d+|other)\s+(.+?)\s+([\d,]+)\s+([\d.]+)%\s+([\d,]+|-)$')


@pytest.fixture(scope='module')
def pristine(tmp_path_factory) -> Path:
    return generate_synthetic_ade20k(tmp_path_factory.mktemp('syn'), num_classes=NUM_CLASSES,
                                     num_train=NUM_TRAIN, num_val=NUM_VAL, image_size=32)


def check_dataset(data_root: Path, *options: str, workers: int = 0):
    """Runs the tool on the quickstart config with its data in ``data_root``."""
    cmd = [sys.executable, str(ROOT / 'tools/check_dataset.py'), str(QUICKSTART),
           '--num-workers', str(workers), '--cfg-options'] + [
               f'{split}_dataloader.dataset.data_root={data_root}'
               for split in ('train', 'val', 'test')] + list(options)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run(cmd, cwd=data_root.parent, env=env, capture_output=True, text=True,
                          timeout=300)


def section(output: str, key: str) -> list[str]:
    """The lines the tool printed for one dataset."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f'{key}: '))
    end = next((i for i, line in enumerate(lines[start + 1:], start + 1)
                if not line.startswith('  ')), len(lines))
    return lines[start:end]


def histogram(lines: list[str]) -> dict[str, tuple[str, int, int]]:
    """``{value: (class, pixels, label maps)}`` from a dataset's lines."""
    rows = {}
    for line in lines:
        if match := ROW.match(line):
            value, name, pixels, _, maps = match.groups()
            rows[value] = (name, int(pixels.replace(',', '')), maps)
    return rows


def expected_histogram(data: Path, split: str) -> dict[str, tuple[str, int, int]]:
    """The same numbers read from the files: value ``v`` of a file is class ``v - 1``, and 0
    is ignored (``reduce_zero_label``)."""
    pixels, maps = np.zeros(NUM_CLASSES + 1, int), np.zeros(NUM_CLASSES + 1, int)
    for path in sorted((data / 'annotations' / split).glob('*.png')):
        counts = np.bincount(cv2.imread(str(path), cv2.IMREAD_UNCHANGED).ravel(),
                             minlength=NUM_CLASSES + 1)
        pixels, maps = pixels + counts, maps + (counts > 0)
    names = synthetic_metainfo(NUM_CLASSES)['classes']
    rows = {str(v): (names[v].strip(), pixels[v + 1], str(maps[v + 1]))
            for v in range(NUM_CLASSES)}
    rows['255'] = ('(ignored)', pixels[0], str(maps[0]))
    return rows


def test_clean_dataset_summary(pristine):
    proc = check_dataset(pristine, workers=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    train, val = section(proc.stdout, TRAIN), section(proc.stdout, VAL)
    assert train[0] == (f"{TRAIN}: {NUM_TRAIN} samples in '{pristine}/images/training', "
                        f'{NUM_CLASSES} classes')
    assert val[0] == (f"{VAL}: {NUM_VAL} samples in '{pristine}/images/validation', "
                      f'{NUM_CLASSES} classes')
    assert histogram(train) == expected_histogram(pristine, 'training')
    assert histogram(val) == expected_histogram(pristine, 'validation')
    assert train[-1] == val[-1] == '  problems: none'
    assert ('test_dataloader.dataset: the same dataset as val_dataloader.dataset '
            '(checked above)') in proc.stdout
    assert proc.stdout.splitlines()[-1] == (f'Checked 2 datasets, {NUM_TRAIN + NUM_VAL} '
                                            'samples: no problems found.')


def damage(data: Path) -> dict[str, str]:
    """Damages the dataset in eight ways; returns, per problem, the start of its message."""
    ann, img = data / 'annotations/training', data / 'images/training'
    names = [f'ADE_train_{i:08d}' for i in range(1, NUM_TRAIN + 1)]
    labels = {name: cv2.imread(str(ann / f'{name}.png'), cv2.IMREAD_UNCHANGED)
              for name in names}
    cv2.imwrite(str(ann / f'{names[0]}.png'), labels[names[0]][:, :24])  # cropped
    (ann / f'{names[1]}.png').write_bytes(b'\x89PNG garbage')  # corrupt
    beyond = labels[names[2]].copy()
    beyond[:2, :2] = 200
    cv2.imwrite(str(ann / f'{names[2]}.png'), beyond)  # values that are not classes
    cv2.imwrite(str(ann / f'{names[3]}.png'), np.stack([labels[names[3]]] * 3, -1))  # colour
    (ann / f'{names[4]}.png').unlink()  # an image without its label map
    (img / f'{names[5]}.jpg').unlink()  # a label map without its image
    (img / f'{names[6]}.jpg').write_text('not a JPEG')  # corrupt image
    val_label = data / 'annotations/validation/ADE_val_00000002.png'
    cv2.imwrite(str(val_label), cv2.resize(cv2.imread(str(val_label), cv2.IMREAD_UNCHANGED),
                                           (16, 16), interpolation=cv2.INTER_NEAREST))
    return {
        'cropped': f"{TRAIN}: label map '{ann}/{names[0]}.png' is 24x32 pixels but its image "
                   f"'{img}/{names[0]}.jpg' is 32x32 (width x height)",
        'corrupt label': f"{TRAIN}: label map '{ann}/{names[1]}.png' cannot be decoded",
        'not classes': f"{TRAIN}: label map '{ann}/{names[2]}.png' holds the values [200], "
                       'which are not classes',
        'colour': f"{TRAIN}: label map '{ann}/{names[3]}.png' has shape (32, 32, 3)",
        'unlabelled': f"{TRAIN}: 1 of {NUM_TRAIN - 1} images have no label map: "
                      f"'{img}/{names[4]}.jpg'",
        'orphan': f"{TRAIN}: 1 label maps have no image: '{ann}/{names[5]}.png'",
        'corrupt image': f"{TRAIN}: image '{img}/{names[6]}.jpg' cannot be decoded",
        'val size': f"{VAL}: label map '{val_label}' is 16x16 pixels but its image "
                    f"'{data}/images/validation/ADE_val_00000002.jpg' is 32x32",
    }


def test_every_problem_is_listed(pristine, tmp_path):
    data = Path(shutil.copytree(pristine, tmp_path / pristine.name))
    expected = damage(data)
    proc = check_dataset(data, 'model.class_names=[wall,sky]')
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    out = proc.stdout
    numbered = [line for line in out.splitlines() if re.match(r'  \d+\. ', line)]
    for problem, start in expected.items():
        assert sum(line.split('. ', 1)[1].startswith(start) for line in numbered) == 1, problem
    assert section(out, TRAIN)[0].startswith(f'{TRAIN}: {NUM_TRAIN - 1} samples in ')
    assert '  problems: 7' in section(out, TRAIN) and '  problems: 1' in section(out, VAL)
    assert ('config: model.class_names has 2 names but train_dataloader.dataset has 8 '
            'classes') in out
    assert out.splitlines()[-1] == (f'Checked 2 datasets, {NUM_TRAIN - 1 + NUM_VAL} samples: '
                                    '9 problems (listed above).')


def test_a_missing_folder_is_listed_and_the_other_datasets_checked(pristine, tmp_path):
    proc = check_dataset(pristine, f'val_dataloader.dataset.data_root={tmp_path}/nowhere')
    assert proc.returncode == 1
    assert (f"{VAL}: the image folder '{tmp_path}/nowhere/images/validation' does not "
            'exist') in proc.stdout
    assert section(proc.stdout, TRAIN)[-1] == '  problems: none'
    assert section(proc.stdout, 'test_dataloader.dataset')[-1] == '  problems: none'
    assert proc.stdout.splitlines()[-1] == (f'Checked 3 datasets, {NUM_TRAIN + NUM_VAL} '
                                            'samples: 1 problem (listed above).')


def test_class_names_that_training_would_refuse_are_listed(pristine):
    """The scan makes the model's check too: a name longer than the text context."""
    names = '[wall,building,sky,floor,tree,ceiling,road,asphaltroadsurfacearea]'  # no spaces
    proc = check_dataset(pristine, f'model.class_names={names}')  # in --cfg-options
    assert proc.returncode == 1
    assert ("config: model.class_names: {'asphaltroadsurfacearea': 9} (name: tokens with SOS "
            'and EOS) do not fit model.context_length=5') in proc.stdout
    assert proc.stdout.splitlines()[-1].endswith('1 problem (listed above).')
