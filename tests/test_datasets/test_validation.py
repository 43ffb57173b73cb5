"""Bad data gives one clear error that names the config key or the file (``CheckedDataset``).

Each test damages a copy of a small synthetic dataset in ADE20K's layout (16 training images
of 64 px, 8 classes, ``reduce_zero_label``) in one way.
"""
import re
import runpy
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules
from PIL import Image
from torch.utils.data import DataLoader

from denseclip.datasets import (CheckedDataset, DataError, check_class_names,
                                generate_synthetic_ade20k, synthetic_metainfo, wrap_datasets)
from denseclip.engine.config import fill_class_names

register_all_modules(init_default_scope=True)

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
KEY = 'train_dataloader.dataset'
NUM_CLASSES = 8
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')]


@pytest.fixture(scope='module')
def pristine(tmp_path_factory) -> Path:
    return generate_synthetic_ade20k(tmp_path_factory.mktemp('syn'), num_classes=NUM_CLASSES,
                                     num_train=16, num_val=4, image_size=64, seed=0)


@pytest.fixture
def data(pristine, tmp_path) -> Path:
    """A copy of the dataset to damage."""
    return Path(shutil.copytree(pristine, tmp_path / 'ADEChallengeData2016'))


def checked(data_root: Path, **changes) -> CheckedDataset:
    dataset = dict(type='ADE20KDataset', data_root=str(data_root),
                   data_prefix=dict(img_path='images/training',
                                    seg_map_path='annotations/training'),
                   metainfo=synthetic_metainfo(NUM_CLASSES), pipeline=PIPELINE)
    dataset.update(changes)
    return CheckedDataset(dataset, cfg_key=KEY)


def image(data: Path, index: int) -> Path:
    return data / 'images/training' / f'ADE_train_{index:08d}.jpg'


def label(data: Path, index: int) -> Path:
    return data / 'annotations/training' / f'ADE_train_{index:08d}.png'


def sample_of(dataset: CheckedDataset, path: Path) -> int:
    return next(i for i in range(len(dataset))
                if path.stem in dataset.get_data_info(i)['img_path'])


def test_intact_dataset_loads(data):
    dataset = checked(data)
    assert len(dataset) == 16
    assert dataset.metainfo['classes'] == synthetic_metainfo(NUM_CLASSES)['classes']
    labels = dataset[0]['data_samples'].gt_sem_seg.data
    assert labels.shape == (1, 64, 64) and int(labels.max()) == 255  # 'other' is ignored


def test_missing_folder_names_the_config_key(tmp_path):
    with pytest.raises(DataError, match=re.escape(
            f"{KEY}: the image folder '{tmp_path}/nowhere/images/training' does not exist "
            f"(data_root='{tmp_path}/nowhere'") + r'.*--cfg-options ' + re.escape(
            f'{KEY}.data_root=DIR')):
        checked(tmp_path / 'nowhere')


def test_missing_label_folder(data):
    shutil.rmtree(data / 'annotations/training')
    with pytest.raises(DataError, match=r'the label folder .*annotations/training\' does not '
                                        r'exist'):
        checked(data)


def test_empty_folder(data):
    for path in (data / 'images/training').iterdir():
        path.unlink()
    with pytest.raises(DataError, match=r"images/training' holds no images ending in '\.jpg' "
                                        r'\(img_suffix\)'):
        checked(data)


def test_image_without_label_map(data):
    label(data, 3).unlink()
    with pytest.raises(DataError, match=rf"{KEY}: 1 of 16 images have no label map: "
                                        rf"'.*{image(data, 3).name}'.*seg_map_suffix"):
        checked(data)


def test_label_map_without_image(data):
    image(data, 5).unlink()
    with pytest.raises(DataError, match=rf"{KEY}: 1 label maps have no image: "
                                        rf"'.*{label(data, 5).name}'.*img_suffix"):
        checked(data)


@pytest.mark.parametrize('damage', ['garbage', 'truncated'])
def test_corrupt_label_map_is_named(data, damage):
    path = label(data, 2)
    content = path.read_bytes()
    path.write_bytes(b'\x00garbage' * 10 if damage == 'garbage' else content[:len(content) // 2])
    dataset = checked(data)
    with pytest.raises(DataError, match=rf"label map '.*{path.name}' cannot be decoded: the file "
                                        r'is corrupt, truncated or not an image'):
        dataset[sample_of(dataset, path)]


def test_corrupt_image_is_named(data):
    path = image(data, 4)
    path.write_text('this is not a JPEG')
    dataset = checked(data)
    with pytest.raises(DataError, match=rf"image '.*{path.name}' cannot be decoded"):
        dataset[sample_of(dataset, path)]


@pytest.mark.parametrize('classes', [NUM_CLASSES, None], ids=['8-of-150', 'all-150'])
def test_label_values_beyond_the_classes(data, classes):
    """A label map holds ADE20K ids 1..150 (0 = other): ids of classes left out of a subset
    ``metainfo`` are ignored by mmseg's label_map, anything else must be 255."""
    path = label(data, 6)
    values = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    values[:4, :4] = 200
    values[4:8, :4] = 255  # ignored: allowed
    values[8:12, :4] = 150  # the last ADE20K class: allowed
    cv2.imwrite(str(path), values)
    metainfo = synthetic_metainfo(classes) if classes else None
    dataset = checked(data, metainfo=metainfo)
    subset = r' \(those not in metainfo.classes are ignored\)' if classes else ''
    with pytest.raises(DataError, match=rf"label map '.*{path.name}' holds the values \[200\], "
                                        r'which are not classes: the dataset has 150 classes, '
                                        r'so a label map may hold 0 \(ignored\), 1\.\.150 for '
                                        rf'the classes{subset} and 255 \(ignored\)'):
        dataset[sample_of(dataset, path)]


def test_colour_label_map(data):
    path = label(data, 7)
    grey = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(path), np.stack([grey] * 3, axis=-1))
    dataset = checked(data)
    with pytest.raises(DataError, match=r'has shape \(64, 64, 3\): expected one channel'):
        dataset[sample_of(dataset, path)]


def test_error_crosses_dataloader_workers(data):
    label(data, 1).write_bytes(b'broken')
    dataset = checked(data)
    loader = DataLoader(dataset, batch_size=1, num_workers=1, collate_fn=lambda batch: batch)
    with pytest.raises(DataError, match=rf"label map '.*{label(data, 1).name}' cannot be "
                                        'decoded'):
        for _ in loader:
            pass


def test_wrap_datasets_and_class_name_check():
    cfg = Config.fromfile(str(QUICKSTART))
    wrap_datasets(cfg)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[key].dataset.type == 'CheckedDataset'
        assert cfg[key].dataset.dataset.type == 'ADE20KDataset'
    wrap_datasets(cfg)  # idempotent
    assert cfg.train_dataloader.dataset.dataset.type == 'ADE20KDataset'

    cfg.model.class_names = ['wall', 'sky']
    with pytest.raises(ValueError, match=r'model\.class_names has 2 names but '
                                         r'train_dataloader\.dataset has 8 classes'):
        check_class_names(cfg)


def test_train_tool_reports_a_mistyped_data_root(tmp_path, monkeypatch, capsys):
    """What a user of tools/train.py sees (the tool runs in this process to save start-up)."""
    wrong = tmp_path / 'data/ade/ADEChallengeData2061'
    monkeypatch.setattr(sys, 'argv', [
        'tools/train.py', str(QUICKSTART), '--work-dir', str(tmp_path / 'work'),
        '--cfg-options', f'train_dataloader.dataset.data_root={wrong}'])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(ROOT / 'tools/train.py'), run_name='__main__')
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 1
    assert message.startswith(
        f"error: train_dataloader.dataset: the image folder '{wrong}/images/training' does not "
        f"exist (data_root='{wrong}'")
    assert message.endswith('e.g. --cfg-options train_dataloader.dataset.data_root=DIR')


# ----------------------------------------------------------------- label map of another size
def rewrite_label(path: Path, size: tuple[int, int]) -> None:
    """Writes the label map again at ``size`` (width, height), nearest-neighbour."""
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(path), cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST))


def size_message(label_path: Path, label_size: str, image_path: Path, image_size: str) -> str:
    return (f"label map '{label_path}' is {label_size} pixels but its image '{image_path}' is "
            f'{image_size} (width x height): a label map must have the size of its image, '
            f'pixel for pixel. Re-export the label map at {image_size.split()[0]} (if it is a '
            'scaled copy, resize it with nearest-neighbour interpolation, which keeps the class '
            'indices), or remove the pair from the dataset.')


HINT = 'Run python tools/check_dataset.py CONFIG to list every problem of the dataset at once.'


@pytest.mark.parametrize('size', [(32, 32), (64, 48), (48, 64)],
                         ids=['scaled-copy', 'cropped', 'transposed'])
def test_label_map_of_another_size(data, size):
    """With some sizes the pipeline used to train on misaligned pairs, with others it failed
    in the loss (torch.stack) or the metric (IndexError), never naming the file."""
    path = label(data, 9)
    rewrite_label(path, size)
    dataset = checked(data)
    with pytest.raises(DataError) as error:
        dataset[sample_of(dataset, path)]
    assert str(error.value) == (f'{KEY}: ' + size_message(path, f'{size[0]}x{size[1]}',
                                                          image(data, 9), '64x64') + ' ' + HINT)


def write_turned_photo(path: Path, stored: tuple[int, int]) -> None:
    """A JPEG stored ``stored`` (width, height) whose EXIF orientation 6 turns it by 90°."""
    exif = Image.Exif()
    exif[0x0112] = 6
    pixels = np.random.default_rng(0).integers(0, 255, (stored[1], stored[0], 3), np.uint8)
    Image.fromarray(pixels).save(path, exif=exif.tobytes())


@pytest.mark.parametrize('color_type', ['color', 'color_ignore_orientation'])
def test_label_map_size_follows_the_exif_orientation(data, color_type):
    """OpenCV turns a photo by its EXIF orientation when mmcv decodes it in colour (not when
    told to ignore it); label maps are decoded unchanged. The check compares what is loaded."""
    image_path, label_path = image(data, 10), label(data, 10)
    write_turned_photo(image_path, stored=(64, 48))
    loaded = (48, 64) if color_type == 'color' else (64, 48)
    rewrite_label(label_path, loaded)
    pipeline = [dict(PIPELINE[0], color_type=color_type)] + PIPELINE[1:]
    dataset = checked(data, pipeline=pipeline)
    sample = dataset[sample_of(dataset, label_path)]['data_samples']
    assert sample.gt_sem_seg.data.shape[1:] == sample.img_shape == loaded[::-1]

    rewrite_label(label_path, (64, 48))  # drawn on the stored pixels
    if color_type == 'color':
        with pytest.raises(DataError) as error:
            dataset[sample_of(dataset, label_path)]
        assert str(error.value) == (
            f'{KEY}: ' + size_message(label_path, '64x48', image_path, '48x64 as loaded '
                                      '(stored as 64x48, turned by its EXIF orientation)') +
            " If the labels were drawn on the stored pixels, load the images with "
            "LoadImageFromFile(color_type='color_ignore_orientation') instead. " + HINT)


def test_train_and_test_tools_name_a_label_map_of_another_size(run_tool, data, tmp_path):
    """What users of tools/train.py and tools/test.py see: an error naming the file, both
    sizes and the fix, and a non-zero exit, instead of misaligned training or a raw error."""
    train_label = label(data, 9)
    val_image = data / 'images/validation/ADE_val_00000002.jpg'
    val_label = data / 'annotations/validation/ADE_val_00000002.png'
    rewrite_label(train_label, (32, 32))  # trained silently on misaligned pairs before
    rewrite_label(val_label, (64, 40))  # IndexError in IoUMetric before
    options = ['--cfg-options'] + [f'{split}_dataloader.dataset.data_root={data}'
                                   for split in ('train', 'val', 'test')]

    train = run_tool('train.py', QUICKSTART, '--work-dir', tmp_path / 'train', *options,
                     'train_cfg.max_iters=2', cwd=tmp_path)  # 2 x 8 = all 16
    assert train.returncode != 0
    assert train.last_line == ('error: train_dataloader.'
                                'dataset: ' + size_message(train_label, '32x32',
                                                           image(data, 9), '64x64') + ' ' + HINT)

    cfg = fill_class_names(Config.fromfile(str(QUICKSTART)))
    checkpoint = tmp_path / 'random.pth'
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict(), 'meta': {}}, checkpoint)
    test = run_tool('test.py', QUICKSTART, checkpoint, '--work-dir', tmp_path / 'test',
                    *options, cwd=tmp_path)
    assert test.returncode != 0
    assert test.last_line == ('error: test_dataloader.'
                               'dataset: ' + size_message(val_label, '64x40', val_image,
                                                          '64x64') + ' ' + HINT)
