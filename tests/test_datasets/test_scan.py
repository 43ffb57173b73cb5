"""``scan_dataset``: every check over every sample of a dataset config, wrappers included.

The tool that prints these reports (tools/check_dataset.py) is tested as a subprocess in
tests/test_tools/test_check_dataset.py; here the datasets are scanned in this process.
"""
from pathlib import Path

import numpy as np
import pytest
from mmseg.utils import register_all_modules

from denseclip.datasets import (CheckedDataset, DataError, DatasetReport,
                                generate_synthetic_ade20k, scan_dataset, synthetic_metainfo)

register_all_modules(init_default_scope=True)

NUM_CLASSES, NUM_TRAIN = 5, 6
KEY = 'train_dataloader.dataset'
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')]


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    return generate_synthetic_ade20k(tmp_path_factory.mktemp('syn'), num_classes=NUM_CLASSES,
                                     num_train=NUM_TRAIN, num_val=2, image_size=32)


def ade(data_root: Path) -> dict:
    return dict(type='ADE20KDataset', data_root=str(data_root),
                metainfo=synthetic_metainfo(NUM_CLASSES), pipeline=PIPELINE,
                data_prefix=dict(img_path='images/training',
                                 seg_map_path='annotations/training'))


def test_wrapped_datasets_are_scanned_once_each(data):
    repeated = dict(type='RepeatDataset', times=3, dataset=ade(data))
    report = scan_dataset(dict(type='CheckedDataset', dataset=repeated), KEY)
    assert report.problems == [] and report.samples == NUM_TRAIN  # not 3 x NUM_TRAIN
    assert report.folders == [f'{data}/images/training']
    assert report.classes == synthetic_metainfo(NUM_CLASSES)['classes']
    assert report.label_maps[255] == NUM_TRAIN and report.pixels.sum() == NUM_TRAIN * 32 * 32


def test_a_missing_member_of_a_concatenation_is_named(data, tmp_path):
    concat = dict(type='ConcatDataset', datasets=[ade(data), ade(tmp_path / 'nowhere')])
    report = scan_dataset(concat, KEY)
    assert report.samples == NUM_TRAIN
    assert len(report.problems) == 1 and report.problems[0].startswith(
        f"{KEY}.datasets.1: the image folder '{tmp_path}/nowhere/images/training' does not "
        'exist')
    # the checked dataset names it too (its members are built without listing their files)
    with pytest.raises(DataError, match=rf'^{KEY}\.datasets\.1: the image folder '):
        CheckedDataset(concat, cfg_key=KEY)


def test_a_dataset_that_cannot_be_built(data):
    report = scan_dataset(dict(ade(data), type='ADE20KDatset'), KEY)
    assert report.samples == 0 and len(report.problems) == 1
    assert report.problems[0].startswith(f'{KEY}: the dataset cannot be built (KeyError: ')
    assert report.problems[0].endswith('; fix its config')


def test_summary_lists_the_histogram_and_every_problem():
    report = DatasetReport(KEY, classes=('wall', 'sky'), folders=['images'],
                           problems=['first', 'second'])
    report.add([], np.bincount([0, 0, 0, 1, 255, 7], minlength=256))
    report.add(['third'], None)
    assert report.summary().splitlines() == [
        f"{KEY}: 2 samples in 'images', 2 classes",
        '  value  class                 pixels   share  label maps',
        '      0  wall                       3   50.0%           1',
        '      1  sky                        1   16.7%           1',
        '    255  (ignored)                  1   16.7%           1',
        '  other  (not a class)              1   16.7%           -',
        '  problems: 3',
        '  1. first',
        '  2. second',
        '  3. third',
    ]


def test_a_dataset_without_class_names(data):
    """mmseg's BaseSegDataset, the type for custom folders, has no classes of its own."""
    plain = dict(ade(data), type='BaseSegDataset', metainfo=None)
    message = (f'{KEY}: the dataset has no class names (metainfo.classes): DenseCLIP reads '
               'them with its text encoder and sizes its outputs by them. Set '
               f"{KEY}.metainfo=dict(classes=('name 0', 'name 1', ...)) in label order "
               '(docs/custom_dataset.md).')
    assert scan_dataset(plain, KEY).problems == [message]
    with pytest.raises(DataError) as error:
        CheckedDataset(plain, cfg_key=KEY)
    assert str(error.value) == message
