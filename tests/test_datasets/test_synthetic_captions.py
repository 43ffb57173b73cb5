"""Tests for the captions of the synthetic scenes and the synthetic ImageFolder split."""
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from denseclip.datasets.synthetic import (CAPTION_TEMPLATES, MARKER, MIN_OBJECT_FRACTION,
                                          PARTIAL_MARKER, caption,
                                          generate_synthetic_ade20k,
                                          generate_synthetic_imagefolder, render_object,
                                          synthetic_metainfo)
from denseclip.datasets.synthetic_render import class_appearance

# 12 classes reach 'earth' (class 14 is not needed: 'an' is tested on the caption function)
SCENES = dict(num_classes=12, num_train=8, num_val=4, image_size=(40, 48))
FOLDER = dict(num_classes=8, num_train=6, num_val=4, image_size=48)
SPLITS = (('training', 'num_train'), ('validation', 'num_val'))


def _names(num_classes: int) -> list[str]:
    return [name.strip() for name in synthetic_metainfo(num_classes)['classes']]


def _read_jsonl(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for line, record in zip(lines, records):
        assert list(record) == ['image', 'caption'], line
        assert line == json.dumps(record), line  # '{"image": "...", "caption": "..."}'
    return records


def _parse(text: str) -> list[str]:
    """The class names a caption lists, in order, checking the template and the articles."""
    for template in CAPTION_TEMPLATES:
        prefix, suffix = template.split('{}')
        if text.startswith(prefix) and text.endswith(suffix):
            listed = text[len(prefix):len(text) - len(suffix)]
            break
    else:
        raise AssertionError(f'{text!r} matches no caption template')
    items = re.split(r', | and ', listed)
    assert listed.count(' and ') == (len(items) > 1), text
    names = []
    for item in items:
        article, name = item.split(' ', 1)
        assert article == ('an' if name[0] in 'aeiou' else 'a'), text
        names.append(name)
    return names


def _all_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def scenes(tmp_path_factory) -> Path:
    return generate_synthetic_ade20k(tmp_path_factory.mktemp('scenes'), **SCENES)


@pytest.fixture(scope='module')
def folder(tmp_path_factory) -> Path:
    return generate_synthetic_imagefolder(tmp_path_factory.mktemp('folder'), **FOLDER)


def test_caption_sentences():
    assert caption(['tree', 'road']) == 'a photo of a tree and a road.'
    assert caption(['wall', 'floor', 'bed ']) == 'a photo of a wall, a floor and a bed.'
    assert caption(['earth'], 'an image of {}.') == 'an image of an earth.'
    with pytest.raises(ValueError, match='at least one class'):
        caption([])


def test_scene_captions_name_the_visible_classes(scenes):
    names = _names(SCENES['num_classes'])
    templates = set()
    for split, key in SPLITS:
        records = _read_jsonl(scenes / 'captions' / f'{split}.jsonl')
        stem = 'ADE_train' if split == 'training' else 'ADE_val'
        assert [r['image'] for r in records] == [
            f'images/{split}/{stem}_{i:08d}.jpg' for i in range(1, SCENES[key] + 1)]
        for record in records:
            assert (scenes / record['image']).is_file()
            label_path = scenes / record['image'].replace('images', 'annotations', 1)
            label = cv2.imread(str(label_path.with_suffix('.png')), cv2.IMREAD_UNCHANGED)
            area = np.bincount(label.ravel(), minlength=len(names) + 1)
            listed = _parse(record['caption'])
            # exactly the classes left in the label map (not those drawn, then covered),
            # each once, largest first
            assert sorted(listed) == sorted(names[k - 1] for k in np.flatnonzero(area[1:]) + 1)
            assert [area[names.index(name) + 1] for name in listed] == sorted(
                (area[names.index(name) + 1] for name in listed), reverse=True)
            templates.add(record['caption'].split(' a')[0])
    assert len(templates) > 1  # the phrasing varies between images


def test_scene_captions_can_be_left_out(tmp_path):
    data_dir = generate_synthetic_ade20k(tmp_path, **SCENES, captions=False)
    assert not (data_dir / 'captions').exists()
    assert json.loads((data_dir / MARKER).read_text())['captions'] is False
    with pytest.raises(FileExistsError, match='other parameters'):
        generate_synthetic_ade20k(tmp_path, **SCENES)
    generate_synthetic_ade20k(tmp_path, **SCENES, overwrite=True)
    assert len(_read_jsonl(data_dir / 'captions' / 'validation.jsonl')) == SCENES['num_val']
    (data_dir / 'captions' / 'validation.jsonl').unlink()
    with pytest.raises(FileExistsError, match='incomplete'):
        generate_synthetic_ade20k(tmp_path, **SCENES)
    with pytest.raises(ValueError, match='captions'):
        generate_synthetic_ade20k(tmp_path / 'b', **SCENES, captions='yes')


def test_old_format_version_is_not_reused(tmp_path):
    data_dir = generate_synthetic_ade20k(tmp_path, **SCENES)
    marker = json.loads((data_dir / MARKER).read_text())
    del marker['captions']
    (data_dir / MARKER).write_text(json.dumps(dict(marker, version=1)))  # as version 1 wrote
    with pytest.raises(FileExistsError, match='format version 1, this code writes version 2'):
        generate_synthetic_ade20k(tmp_path, **SCENES)
    generate_synthetic_ade20k(tmp_path, **SCENES, overwrite=True)
    assert json.loads((data_dir / MARKER).read_text())['version'] == 2


def test_image_folder_layout_and_captions(folder):
    names = _names(FOLDER['num_classes'])
    assert folder.name == 'imagefolder'
    assert json.loads((folder / MARKER).read_text())['num_train'] == FOLDER['num_train']
    assert not (folder / PARTIAL_MARKER).exists()
    for split, key in SPLITS:
        assert sorted(p.name for p in (folder / split).iterdir()) == sorted(names)
        expected = []
        for name in names:
            files = sorted(p.name for p in (folder / split / name).iterdir())
            assert files == [f'{i:04d}.jpg' for i in range(1, FOLDER[key] + 1)]
            expected += [f'{split}/{name}/{file}' for file in files]
        records = _read_jsonl(folder / f'{split}.jsonl')
        assert [r['image'] for r in records] == expected
        for record in records:
            assert _parse(record['caption']) == [record['image'].split('/')[1]]


def test_image_folder_images_show_their_class(folder):
    """Every file is the rendering of one large shape of its folder's class."""
    size = FOLDER['image_size']
    appearances = [class_appearance(k) for k in range(FOLDER['num_classes'] + 1)]
    for split_id, (split, key) in enumerate(SPLITS):
        for k, name in enumerate(_names(FOLDER['num_classes']), start=1):
            for i in range(FOLDER[key]):
                rng = np.random.default_rng([0, len(SPLITS) + split_id, k, i])
                image, label = render_object(rng, (size, size), appearances, k)
                values, counts = np.unique(label[label > 0], return_counts=True)
                assert values[counts.argmax()] == k and set(values) == {k}
                assert (label == k).mean() >= MIN_OBJECT_FRACTION
                saved = cv2.imread(str(folder / split / name / f'{i + 1:04d}.jpg'))
                # JPEG blurs noise and chroma: compare local means (measured 1.4-1.6;
                # another image of the same class differs by ~40)
                assert np.abs(_blur(saved[..., ::-1]) - _blur(image)).mean() < 4
    with pytest.raises(ValueError, match='k must be a class'):
        render_object(np.random.default_rng(0), (32, 32), appearances, 0)


def _blur(image: np.ndarray) -> np.ndarray:
    return cv2.blur(image.astype(np.float32), (5, 5))


def _centre_features(folder: Path, split: str, names: list[str]):
    feats, labels = [], []
    for k, name in enumerate(names):
        for path in sorted((folder / split / name).iterdir()):
            img = cv2.imread(str(path)).astype(np.float32) / 255
            h, w = img.shape[:2]
            centre = img[int(0.4 * h):int(0.6 * h), int(0.4 * w):int(0.6 * w)]
            feats.append(np.concatenate([centre.mean((0, 1)), centre.std((0, 1))]))
            labels.append(k)
    return np.array(feats), np.array(labels)


def test_image_folder_is_classifiable_by_nearest_class_mean(folder):
    names = _names(FOLDER['num_classes'])
    x_train, y_train = _centre_features(folder, 'training', names)
    x_val, y_val = _centre_features(folder, 'validation', names)
    mu, sigma = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_val = (x_train - mu) / sigma, (x_val - mu) / sigma
    means = np.stack([x_train[y_train == k].mean(0) for k in range(len(names))])
    accuracy = (((x_val[:, None] - means[None])**2).sum(-1).argmin(1) == y_val).mean()
    # chance is 1 / 8; measured 1.0 with seed 0
    assert accuracy > 0.8, accuracy


def test_image_folder_is_deterministic_and_idempotent(tmp_path, folder):
    again = generate_synthetic_imagefolder(tmp_path / 'a', **FOLDER)
    assert _all_files(again) == _all_files(folder)
    other = _all_files(generate_synthetic_imagefolder(tmp_path / 'b', **FOLDER, seed=1))
    assert other.keys() == _all_files(folder).keys()
    assert other['training/wall/0001.jpg'] != _all_files(folder)['training/wall/0001.jpg']

    image = again / 'validation' / 'sky' / '0001.jpg'
    mtime = image.stat().st_mtime_ns
    assert generate_synthetic_imagefolder(tmp_path / 'a', **FOLDER) == again
    assert image.stat().st_mtime_ns == mtime
    changed = dict(FOLDER, num_val=2)
    with pytest.raises(FileExistsError, match='other parameters.*overwrite'):
        generate_synthetic_imagefolder(tmp_path / 'a', **changed)
    generate_synthetic_imagefolder(tmp_path / 'a', **changed, overwrite=True)
    assert len(list((again / 'validation' / 'sky').iterdir())) == 2
    assert len(_read_jsonl(again / 'validation.jsonl')) == 2 * FOLDER['num_classes']
    image.unlink()
    with pytest.raises(FileExistsError, match='incomplete'):
        generate_synthetic_imagefolder(tmp_path / 'a', **changed)


@pytest.mark.parametrize('bad', [dict(num_train=0), dict(num_val=10000), dict(num_classes=151)])
def test_image_folder_invalid_parameters(tmp_path, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        generate_synthetic_imagefolder(tmp_path, **dict(FOLDER, **bad))
    assert not (tmp_path / 'imagefolder').exists()
