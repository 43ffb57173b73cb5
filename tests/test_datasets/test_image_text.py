"""ImageTextDataset (JSONL and CSV pairs, clear errors naming the file and line) and CLIP's
crops and packing as transforms."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import Compose
from mmseg.registry import DATASETS
from mmseg.utils import register_all_modules

import denseclip  # noqa: F401  (registers the dataset and transforms)
from denseclip.clip.preprocess import center_crop, resize_shortest
from denseclip.datasets import (CLIPRandomResizedCrop, CLIPResizeCenterCrop, DataError,
                                ImageTextDataset)

register_all_modules(init_default_scope=True)  # LoadImageFromFile in mmseg's scope

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='CLIPResizeCenterCrop', size=32),
            dict(type='PackImageTextInputs')]


def write_images(root: Path, names=('a.jpg', 'sub/b.png'), size=(40, 60)) -> None:
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name), rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def write_jsonl(path: Path, lines) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join((line if isinstance(line, str) else json.dumps(line)) + '\n'
                            for line in lines))
    return path


PAIRS = [dict(image='a.jpg', caption='a photo of a wall.'),
         dict(image='sub/b.png', caption=' a sky, and a tree. ', id=7)]


def test_jsonl_paths_relative_to_data_root(tmp_path):
    """Not relative to the annotation file's folder; ann_file is relative to data_root too."""
    write_images(tmp_path)
    write_jsonl(tmp_path / 'ann' / 'train.jsonl', [PAIRS[0], '', PAIRS[1]])
    dataset = ImageTextDataset(ann_file='ann/train.jsonl', data_root=str(tmp_path))
    assert len(dataset) == 2
    info = dataset.get_data_info(1)
    assert info['img_path'] == str(tmp_path / 'sub/b.png')
    assert info['caption'] == 'a sky, and a tree.'


def test_csv_paths_relative_to_the_annotation_folder(tmp_path):
    write_images(tmp_path)
    (tmp_path / 'pairs.csv').write_text('id,image,caption\n1,a.jpg,a wall\n'
                                        '2,sub/b.png,"a sky, and a tree."\n')
    dataset = ImageTextDataset(ann_file=str(tmp_path / 'pairs.csv'))
    assert [dataset.get_data_info(i)['caption'] for i in range(2)] == [
        'a wall', 'a sky, and a tree.']
    assert dataset.get_data_info(0)['img_path'] == str(tmp_path / 'a.jpg')


def test_pipeline_gives_a_square_crop_and_the_caption(tmp_path):
    write_images(tmp_path)
    write_jsonl(tmp_path / 'train.jsonl', PAIRS)
    dataset = DATASETS.build(dict(type='ImageTextDataset', ann_file=str(tmp_path / 'train.jsonl'),
                                  pipeline=PIPELINE))
    data = dataset[0]
    assert data['inputs'].shape == (3, 32, 32) and data['inputs'].dtype == torch.uint8
    sample = data['data_samples']
    assert sample.caption == 'a photo of a wall.'
    assert sample.img_path == str(tmp_path / 'a.jpg') and sample.ori_shape == (40, 60)
    image = cv2.imread(str(tmp_path / 'a.jpg'))
    expected = center_crop(resize_shortest(image, 32), 32).transpose(2, 0, 1)
    np.testing.assert_array_equal(data['inputs'].numpy(), expected)


@pytest.mark.parametrize('line, message', [
    ('{"image": "a.jpg", "caption": "x"', r'line 2: not valid JSON'),
    ('["a.jpg", "x"]', r'line 2: expected a JSON object'),
    ('{"image": "a.jpg"}', r"line 2: no 'caption' key"),
    ('{"caption": "x"}', r"line 2: no 'image' key"),
    ('{"image": "a.jpg", "caption": "  "}', r"line 2: the caption of 'a.jpg' is empty"),
    ('{"image": "", "caption": "x"}', r'line 2: "image" must be a non-empty path'),
])
def test_malformed_lines_are_named(tmp_path, line, message):
    write_images(tmp_path)
    path = write_jsonl(tmp_path / 'train.jsonl', [PAIRS[0], line])
    with pytest.raises(DataError, match=message) as error:
        ImageTextDataset(ann_file=str(path))
    assert str(path) in str(error.value)


@pytest.mark.parametrize('text, message', [
    ('img,caption\na.jpg,x\n', r'line 1: the header.*missing: \[.image.\]'),
    ('image,caption\na.jpg,x,y\n', r'line 2: .*more fields'),
    ('image,caption\na.jpg\n', r'line 2: too few fields'),
    ('image,caption\na.jpg,\n', r"line 2: the caption of 'a.jpg' is empty"),
])
def test_malformed_csv_rows_are_named(tmp_path, text, message):
    write_images(tmp_path)
    (tmp_path / 'pairs.csv').write_text(text)
    with pytest.raises(DataError, match=message):
        ImageTextDataset(ann_file=str(tmp_path / 'pairs.csv'))


def test_missing_images_are_listed_with_their_lines(tmp_path):
    write_images(tmp_path, names=('a.jpg', ))
    path = write_jsonl(tmp_path / 'train.jsonl', PAIRS)
    with pytest.raises(DataError, match=r"1 of 2 image files do not exist: '.*sub/b.png "
                                        r"\(line 2\)'.*relative to"):
        ImageTextDataset(ann_file=str(path))
    assert len(ImageTextDataset(ann_file=str(path), check_files=False)) == 2


def test_empty_missing_and_unknown_annotation_files(tmp_path):
    path = write_jsonl(tmp_path / 'train.jsonl', ['', '  '])
    with pytest.raises(DataError, match='holds no image-caption pairs'):
        ImageTextDataset(ann_file=str(path))
    with pytest.raises(DataError, match=r"'.*none.jsonl' does not exist"):
        ImageTextDataset(ann_file=str(tmp_path / 'none.jsonl'))
    with pytest.raises(DataError, match=r"expected a .jsonl or .csv file.*'.txt'"):
        ImageTextDataset(ann_file=str(tmp_path / 'pairs.txt'))
    with pytest.raises(DataError, match='needs ann_file'):
        ImageTextDataset(ann_file='')


def test_resize_center_crop_matches_clip_preprocessing():
    image = np.random.default_rng(0).integers(0, 256, (50, 80, 3), dtype=np.uint8)
    out = CLIPResizeCenterCrop(32)(dict(img=image))
    np.testing.assert_array_equal(out['img'], center_crop(resize_shortest(image, 32), 32))
    assert out['img_shape'] == (32, 32)


def test_random_resized_crop_keeps_most_of_the_image():
    crop = CLIPRandomResizedCrop(16, scale=(0.9, 1.0))
    np.random.seed(0)
    for _ in range(50):
        top, left, height, width = crop.crop_box(40, 60)
        assert 0 <= top and top + height <= 40 and 0 <= left and left + width <= 60
        assert 0.85 * 2400 <= height * width <= 2400  # rounding may cost a little area
        assert 3 / 4 - 0.05 <= width / height <= 4 / 3 + 0.05
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    out = crop(dict(img=image))
    assert out['img'].shape == (16, 16, 3) and out['img'].dtype == np.uint8


def test_random_resized_crop_falls_back_to_a_centred_crop():
    """A 1 x 20 strip admits no crop of ratio 3/4..4/3 and 90 % of the area."""
    top, left, height, width = CLIPRandomResizedCrop(8).crop_box(1, 20)
    assert (top, height) == (0, 1) and width == 1 and left == 9  # ratio 4/3 -> 1 px wide


@pytest.mark.parametrize('kwargs', [dict(size=0), dict(size=8, scale=(0.5, 1.5)),
                                    dict(size=8, ratio=(2.0, 1.0))])
def test_random_resized_crop_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        CLIPRandomResizedCrop(**kwargs)
