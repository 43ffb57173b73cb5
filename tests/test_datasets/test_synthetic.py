"""Tests for the synthetic ADE20K-layout dataset."""
import json
import runpy
from pathlib import Path

import cv2
import numpy as np
import pytest

from denseclip.datasets import generate_synthetic_ade20k, synthetic_metainfo
from denseclip.datasets.synthetic import MARKER, PARTIAL_MARKER

SMALL = dict(num_classes=5, num_train=6, num_val=4, image_size=(48, 64))
SPLITS = (('training', 'ADE_train', 'num_train'),
          ('validation', 'ADE_val', 'num_val'))


def _all_files(data_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(data_dir)): p.read_bytes()
        for p in sorted(data_dir.rglob('*')) if p.is_file()
    }


def _read_pair(data_dir: Path, split: str, name: str):
    img = cv2.imread(str(data_dir / 'images' / split / f'{name}.jpg'),
                     cv2.IMREAD_UNCHANGED)
    label = cv2.imread(str(data_dir / 'annotations' / split / f'{name}.png'),
                       cv2.IMREAD_UNCHANGED)
    return img, label


@pytest.fixture(scope='module')
def small_data(tmp_path_factory) -> Path:
    return generate_synthetic_ade20k(tmp_path_factory.mktemp('syn'), **SMALL)


def test_layout_and_counts(small_data):
    assert small_data.name == 'ADEChallengeData2016'
    for split, stem, key in SPLITS:
        n = SMALL[key]
        imgs = sorted(
            p.name for p in (small_data / 'images' / split).glob('*'))
        anns = sorted(
            p.name for p in (small_data / 'annotations' / split).glob('*'))
        assert imgs == [f'{stem}_{i:08d}.jpg' for i in range(1, n + 1)]
        assert anns == [f'{stem}_{i:08d}.png' for i in range(1, n + 1)]
    marker = json.loads((small_data / MARKER).read_text())
    assert marker['num_classes'] == 5 and marker['image_size'] == [48, 64]
    assert not (small_data / PARTIAL_MARKER).exists()


def test_images_and_labels(small_data):
    seen = set()
    for split, stem, key in SPLITS:
        for i in range(1, SMALL[key] + 1):
            img, label = _read_pair(small_data, split, f'{stem}_{i:08d}')
            assert img.shape == (48, 64, 3) and img.dtype == np.uint8
            assert label.shape == (48, 64) and label.dtype == np.uint8
            assert label.max() <= SMALL['num_classes']
            assert img.std() > 10  # not blank
            seen.update(np.unique(label).tolist())
    assert seen == set(range(SMALL['num_classes'] + 1))


def test_metainfo():
    meta = synthetic_metainfo(8)
    assert meta['classes'][:3] == ('wall', 'building', 'sky')
    assert len(meta['classes']) == len(meta['palette']) == 8
    assert meta['palette'][0] == [120, 120, 120]
    with pytest.raises(ValueError, match='num_classes'):
        synthetic_metainfo(151)


def test_deterministic(tmp_path, small_data):
    again = generate_synthetic_ade20k(tmp_path / 'a', **SMALL)
    assert _all_files(again) == _all_files(small_data)
    other = generate_synthetic_ade20k(tmp_path / 'b', **SMALL, seed=1)
    other_files = _all_files(other)
    assert other_files.keys() == _all_files(small_data).keys()
    name = 'images/training/ADE_train_00000001.jpg'
    assert other_files[name] != _all_files(small_data)[name]


def test_idempotent_and_mismatch(tmp_path):
    data_dir = generate_synthetic_ade20k(tmp_path, **SMALL)
    img = data_dir / 'images' / 'training' / 'ADE_train_00000001.jpg'
    mtime = img.stat().st_mtime_ns
    assert generate_synthetic_ade20k(tmp_path, **SMALL) == data_dir
    assert img.stat().st_mtime_ns == mtime

    changed = dict(SMALL, num_val=2)
    with pytest.raises(FileExistsError, match='other parameters.*overwrite'):
        generate_synthetic_ade20k(tmp_path, **changed)
    generate_synthetic_ade20k(tmp_path, **changed, overwrite=True)
    val_dir = data_dir / 'images' / 'validation'
    assert len(list(val_dir.iterdir())) == 2
    assert json.loads((data_dir / MARKER).read_text())['num_val'] == 2

    (val_dir / 'ADE_val_00000002.jpg').unlink()
    with pytest.raises(FileExistsError, match='incomplete'):
        generate_synthetic_ade20k(tmp_path, **changed)
    generate_synthetic_ade20k(tmp_path, **changed, overwrite=True)
    assert len(list(val_dir.iterdir())) == 2


def test_interrupted_write_is_detected(tmp_path):
    data_dir = generate_synthetic_ade20k(tmp_path, **SMALL)
    (data_dir / MARKER).rename(data_dir / PARTIAL_MARKER)
    with pytest.raises(FileExistsError, match='incomplete'):
        generate_synthetic_ade20k(tmp_path, **SMALL)
    generate_synthetic_ade20k(tmp_path, **SMALL, overwrite=True)
    assert (data_dir / MARKER).exists()
    assert not (data_dir / PARTIAL_MARKER).exists()


def test_foreign_folder_is_never_deleted(tmp_path):
    user_file = tmp_path / 'ADEChallengeData2016' / 'images' / 'mine.jpg'
    user_file.parent.mkdir(parents=True)
    user_file.write_bytes(b'user data')
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match='no synthetic.json'):
            generate_synthetic_ade20k(tmp_path, **SMALL, overwrite=overwrite)
    assert user_file.read_bytes() == b'user data'


@pytest.mark.parametrize('bad', [
    dict(num_classes=0), dict(num_classes=151), dict(num_train=0),
    dict(image_size=8), dict(image_size=(32, 32, 3)), dict(seed=-1)])
def test_invalid_parameters(tmp_path, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        generate_synthetic_ade20k(tmp_path, **dict(SMALL, **bad))
    assert not (tmp_path / 'ADEChallengeData2016').exists()


def test_loads_with_mmseg_ade20k(small_data):
    from mmseg.datasets import ADE20KDataset
    from mmseg.utils import register_all_modules
    register_all_modules()
    num_classes = SMALL['num_classes']
    dataset = ADE20KDataset(
        data_root=str(small_data),
        metainfo=synthetic_metainfo(num_classes),
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')
        ])
    assert len(dataset) == SMALL['num_val']
    assert dataset.metainfo['classes'] == synthetic_metainfo(
        num_classes)['classes']
    values = set()
    for i in range(len(dataset)):
        sample = dataset[i]
        assert tuple(sample['inputs'].shape) == (3, 48, 64)
        seg = sample['data_samples'].gt_sem_seg.data.numpy()
        raw = _read_pair(small_data, 'validation', f'ADE_val_{i + 1:08d}')[1]
        np.testing.assert_array_equal(
            seg[0], np.where(raw == 0, 255, raw.astype(np.int64) - 1))
        values.update(np.unique(seg).tolist())
    assert values <= set(range(num_classes)) | {255}
    assert 255 in values and len(values) > 2


def test_cli(tmp_path, monkeypatch, capsys):
    tool = Path(__file__).parents[2] / 'tools' / 'make_synthetic_data.py'
    main = runpy.run_path(str(tool))['main']
    argv = ['make_synthetic_data.py', '--root', str(tmp_path),
            '--num-classes', '3', '--num-train', '2', '--num-val', '1',
            '--size', '32', '40', '--seed', '7']
    monkeypatch.setattr('sys.argv', argv)
    main()
    data_dir = tmp_path / 'ADEChallengeData2016'
    assert str(data_dir) in capsys.readouterr().out
    marker = json.loads((data_dir / MARKER).read_text())
    assert marker['image_size'] == [32, 40] and marker['seed'] == 7
    monkeypatch.setattr('sys.argv', argv[:-1] + ['8'])
    with pytest.raises(SystemExit, match='--overwrite'):
        main()


def _pixel_features(img: np.ndarray) -> np.ndarray:
    """Colour and local texture features ``[H * W, 9]`` of a BGR image."""
    img = img.astype(np.float32) / 255
    mean = cv2.blur(img, (5, 5))
    std = np.sqrt(np.maximum(cv2.blur(img**2, (5, 5)) - mean**2, 0))
    gray = img.mean(-1)
    grad_x = cv2.blur(np.abs(cv2.Sobel(gray, -1, 1, 0)), (5, 5))
    grad_y = cv2.blur(np.abs(cv2.Sobel(gray, -1, 0, 1)), (5, 5))
    feats = np.concatenate(
        [mean, std, grad_x[..., None], grad_y[..., None],
         cv2.blur(gray, (9, 9))[..., None]], -1)
    return feats.reshape(-1, feats.shape[-1])


def _split_features(data_dir, split, stem, n):
    feats, labels = [], []
    for i in range(1, n + 1):
        img, label = _read_pair(data_dir, split, f'{stem}_{i:08d}')
        feats.append(_pixel_features(img))
        labels.append(label.reshape(-1))
    return np.concatenate(feats), np.concatenate(labels)


def test_learnable_by_nearest_class_mean(tmp_path):
    num_classes = 8
    data_dir = generate_synthetic_ade20k(
        tmp_path, num_classes=num_classes, num_train=30, num_val=10,
        image_size=64)
    x_train, y_train = _split_features(data_dir, 'training', 'ADE_train', 30)
    x_val, y_val = _split_features(data_dir, 'validation', 'ADE_val', 10)
    mu, sigma = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_val = (x_train - mu) / sigma, (x_val - mu) / sigma
    classes = np.arange(1, num_classes + 1)  # background 0 is ignored
    means = np.stack([x_train[y_train == k].mean(0) for k in classes])
    fg = y_val > 0
    dist = ((x_val[fg, None, :] - means[None])**2).sum(-1)
    accuracy = (classes[dist.argmin(1)] == y_val[fg]).mean()
    # chance is 1 / 8; measured 0.89 with seed 0
    assert accuracy > 0.6, accuracy


def test_cli_captions_and_image_folder_options(tmp_path, monkeypatch, capsys):
    tool = Path(__file__).parents[2] / 'tools' / 'make_synthetic_data.py'
    main = runpy.run_path(str(tool))['main']
    argv = ['make_synthetic_data.py', '--root', str(tmp_path), '--num-classes', '2',
            '--num-train', '1', '--num-val', '1', '--size', '32', '--no-captions',
            '--image-folder']
    monkeypatch.setattr('sys.argv', argv)
    main()
    data_dir = tmp_path / 'ADEChallengeData2016'
    assert not (data_dir / 'captions').exists()
    assert json.loads((data_dir / MARKER).read_text())['captions'] is False
    output = capsys.readouterr().out
    assert '40 train / 20 val images per class' in output  # the default of --image-folder
    for split, count in (('training', 40), ('validation', 20)):
        assert len(list((tmp_path / 'imagefolder' / split / 'building').iterdir())) == count
    monkeypatch.setattr('sys.argv', argv[:-1] + ['--captions', '--overwrite'])
    main()
    assert (data_dir / 'captions' / 'training.jsonl').is_file()
    assert (tmp_path / 'imagefolder' / 'validation' / 'building').is_dir()  # left as it was
