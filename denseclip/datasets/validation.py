"""Clear errors for data that is missing, empty, unpaired, corrupt or wrongly labelled.

mmseg lists a dataset folder and loads its files without checking them: a mistyped
``data_root`` fails with a bare ``FileNotFoundError``, an empty folder with "need at least one
array to concatenate", a corrupt label map with "'NoneType' object has no attribute
'squeeze'", a label value beyond the classes with an index error deep inside the loss (a
device-side assert on GPUs). :class:`CheckedDataset` wraps any dataset config and turns each of
these into a :class:`DataError` that names the config key, the file, what was expected and how
to fix it. ``tools/train.py`` and ``tools/test.py`` wrap every dataloader's dataset with it
(:func:`wrap_datasets`).
"""
import logging
import os
import os.path as osp
from collections.abc import Iterator
from typing import Any, Union

import cv2
import torch
from mmengine.config import Config
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from mmseg.registry import DATASETS

from denseclip.utils.class_names import dataset_class_names

LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
MAX_LISTED = 3  # file names quoted in a message


class DataError(RuntimeError):
    """A dataset is missing, empty, unpaired, corrupt or holds labels that are not classes."""


def _listed(paths: list[str]) -> str:
    more = f' and {len(paths) - MAX_LISTED} more' if len(paths) > MAX_LISTED else ''
    return ', '.join(repr(path) for path in paths[:MAX_LISTED]) + more


def _files(folder: str, suffix: str) -> list[str]:
    """Paths relative to ``folder`` of the files ending in ``suffix``, recursively."""
    found = []
    for root, _, names in os.walk(folder):
        found += [osp.relpath(osp.join(root, name), folder) for name in names
                  if name.endswith(suffix)]
    return found


def _seg_datasets(dataset: Any, key: str) -> Iterator[tuple[Any, str]]:
    """The folder-based segmentation datasets inside ``dataset`` with their config keys."""
    if hasattr(dataset, 'data_prefix') and hasattr(dataset, 'seg_map_suffix'):
        yield dataset, key
    elif hasattr(dataset, 'datasets'):  # ConcatDataset
        for index, child in enumerate(dataset.datasets):
            yield from _seg_datasets(child, f'{key}.datasets.{index}')
    elif hasattr(dataset, 'dataset'):  # RepeatDataset, ClassBalancedDataset, ...
        yield from _seg_datasets(dataset.dataset, f'{key}.dataset')


@DATASETS.register_module()
class CheckedDataset:
    """A dataset wrapper that checks the wrapped dataset's files and labels.

    When the dataset is initialised: its image (and label) folders exist, it holds images,
    every image has a label map and every label map an image. When a sample is loaded: a
    failure names the sample's files (and which one cannot be decoded), and the label map
    holds single-channel class indices below the number of classes, or ``ignore_index``.

    Args:
        dataset: The dataset (config) to wrap; metainfo, length and samples are its own.
        cfg_key: Where the dataset sits in the config (``'train_dataloader.dataset'``), used
            in messages.
        check_labels: Check the label values of every loaded sample (about a millisecond for
            a 512x512 crop).
        lazy_init: Defer the folder checks and the file listing to :meth:`full_init`.
    """

    def __init__(self, dataset: Union[dict, BaseDataset], cfg_key: str = 'dataset',
                 check_labels: bool = True, lazy_init: bool = False):
        self.cfg_key = cfg_key
        self.check_labels = check_labels
        if isinstance(dataset, dict):  # list the files only after the folders are checked
            dataset = DATASETS.build(dict(dataset, lazy_init=True))
        self.dataset = dataset
        self._num_classes = len(self.metainfo['classes'])
        self._ignore_index = next((inner.ignore_index for inner, _ in
                                   _seg_datasets(dataset, cfg_key)), 255)
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    # ----------------------------------------------------------------- dataset protocol
    @property
    def metainfo(self) -> dict:
        return self.dataset.metainfo

    def __len__(self) -> int:
        return len(self.dataset)

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(idx)

    def full_init(self) -> None:
        if self._fully_initialized:
            return
        for dataset, key in _seg_datasets(self.dataset, self.cfg_key):
            self._check_folders(dataset, key)
        try:
            self.dataset.full_init()
        except Exception as err:  # noqa: BLE001  (mmseg raises bare errors while listing)
            raise DataError(f'{self.cfg_key}: the dataset could not be listed '
                            f'({type(err).__name__}: {err})') from err
        if len(self.dataset) == 0:
            raise DataError(f'{self.cfg_key}: the dataset is empty (no samples after listing '
                            'and filtering); check data_root, data_prefix and ann_file')
        for dataset, key in _seg_datasets(self.dataset, self.cfg_key):
            self._check_pairs(dataset, key)
        self._fully_initialized = True

    def __getitem__(self, idx: int) -> Any:
        try:
            data = self.dataset[idx]
        except DataError:
            raise
        except Exception as err:  # noqa: BLE001  (any transform may fail on a bad file)
            raise DataError(self._explain_failure(idx, err)) from err
        if self.check_labels:
            self._check_label_values(data)
        return data

    # ----------------------------------------------------------------- folder checks
    @staticmethod
    def _check_folders(dataset: Any, key: str) -> None:
        if dataset.backend_args:  # a remote store: nothing to check locally
            return
        img_dir = dataset.data_prefix.get('img_path') or dataset.data_root or ''
        ann_dir = dataset.data_prefix.get('seg_map_path')
        where = f'(data_root={dataset.data_root!r}, data_prefix={dict(dataset.data_prefix)!r})'
        fix = (f'Put the dataset there, or point the config at it, e.g. --cfg-options '
               f'{key}.data_root=DIR')
        if not osp.isdir(img_dir):
            raise DataError(f'{key}: the image folder {img_dir!r} does not exist {where}. {fix}')
        if ann_dir and not osp.isdir(ann_dir):
            raise DataError(f'{key}: the label folder {ann_dir!r} does not exist {where}. {fix}')
        if not dataset.ann_file and not _files(img_dir, dataset.img_suffix):
            raise DataError(
                f'{key}: the image folder {img_dir!r} holds no images ending in '
                f'{dataset.img_suffix!r} (img_suffix) {where}. Copy the images there, or set '
                f'{key}.img_suffix to their extension.')

    @staticmethod
    def _check_pairs(dataset: Any, key: str) -> None:
        """Every image has a label map, and (for folder datasets) every label map an image."""
        ann_dir = dataset.data_prefix.get('seg_map_path')
        if dataset.backend_args or not ann_dir:
            return
        infos = [dataset.get_data_info(index) for index in range(len(dataset))]
        unlabelled = [info['img_path'] for info in infos
                      if info.get('seg_map_path') and not osp.isfile(info['seg_map_path'])]
        if unlabelled:
            raise DataError(
                f'{key}: {len(unlabelled)} of {len(infos)} images have no label map: '
                f'{_listed(unlabelled)}. Each image needs a label map of the same name ending in '
                f'{dataset.seg_map_suffix!r} (seg_map_suffix) in {ann_dir!r}; add them, or '
                'remove those images.')
        if dataset.ann_file:  # a split file may list a subset of the label folder
            return
        img_dir = dataset.data_prefix.get('img_path') or dataset.data_root or ''
        images = {osp.relpath(info['img_path'], img_dir)[:-len(dataset.img_suffix)]
                  for info in infos}
        suffix = dataset.seg_map_suffix
        orphans = sorted(osp.join(ann_dir, name) for name in _files(ann_dir, suffix)
                         if name[:-len(suffix)] not in images)
        if orphans:
            raise DataError(
                f'{key}: {len(orphans)} label maps have no image: {_listed(orphans)}. Each '
                f'label map needs an image of the same name ending in {dataset.img_suffix!r} '
                f'(img_suffix) in {img_dir!r}; add the images, or remove those label maps.')

    # ----------------------------------------------------------------- sample checks
    def _explain_failure(self, idx: int, err: Exception) -> str:
        info = self.dataset.get_data_info(idx)
        files = [('image', info.get('img_path')), ('label map', info.get('seg_map_path'))]
        for kind, path in files:
            if not path:
                continue
            if not osp.isfile(path):
                return f'{self.cfg_key}: {kind} {path!r} does not exist (sample {idx})'
            if cv2.imread(path, cv2.IMREAD_UNCHANGED) is None:
                return (f'{self.cfg_key}: {kind} {path!r} cannot be decoded: the file is '
                        'corrupt, truncated or not an image. Replace it, or remove it and its '
                        f'{"label map" if kind == "image" else "image"} from the dataset.')
        named = ', '.join(f'{kind} {path!r}' for kind, path in files if path)
        return (f'{self.cfg_key}: loading sample {idx} ({named}) failed in the data pipeline: '
                f'{type(err).__name__}: {err}')

    def _check_label_values(self, data: Any) -> None:
        samples = data.get('data_samples') if isinstance(data, dict) else None
        for sample in samples if isinstance(samples, list) else [samples]:
            if sample is None or 'gt_sem_seg' not in sample:
                continue
            labels = sample.gt_sem_seg.data
            path = sample.metainfo.get('seg_map_path')
            if labels.ndim != 3 or labels.shape[0] != 1:
                raise DataError(
                    f'{self.cfg_key}: label map {path!r} has shape {tuple(labels.shape)}: '
                    'expected one channel of class indices (a grey-scale or palette PNG, not '
                    'a colour image)')
            bad = (((labels < 0) | (labels >= self._num_classes))
                   & (labels != self._ignore_index))
            if bool(bad.any()):
                self._raise_label_values(path, torch.unique(labels[bad]).tolist(),
                                         bool(sample.metainfo.get('reduce_zero_label')))

    def _raise_label_values(self, path: str, values: list[int], reduce_zero_label: bool) -> None:
        # with a subset of the dataset's classes (metainfo.classes), the file holds ids of all
        # its classes and mmseg's label_map sends the others to ignore_index
        label_map = self.metainfo.get('label_map') or {}
        file_classes = len(label_map) or self._num_classes
        subset = (' (those not in metainfo.classes are ignored)' if label_map else '')
        if reduce_zero_label:  # the file holds value + 1; 0 became ignore_index
            values = [value + 1 for value in values]
            allowed = f'0 (ignored), 1..{file_classes} for the classes{subset}'
        else:
            allowed = f'0..{file_classes - 1} for the classes{subset}'
        raise DataError(
            f'{self.cfg_key}: label map {path!r} holds the values {values}, which are not '
            f'classes: the dataset has {file_classes} classes, so a label map may hold '
            f'{allowed} and {self._ignore_index} (ignored)'
            f'{" with reduce_zero_label=True" if reduce_zero_label else ""}. Fix the label '
            'map, or give the dataset its full class list (metainfo.classes).')


def wrap_datasets(cfg: Config) -> None:
    """Wraps the dataset of every dataloader in ``cfg`` with :class:`CheckedDataset`."""
    for key in LOADERS:
        loader = cfg.get(key)
        if not loader or not loader.get('dataset'):
            continue
        if loader.dataset.get('type') not in ('CheckedDataset', CheckedDataset):
            loader.dataset = dict(type='CheckedDataset', dataset=loader.dataset,
                                  cfg_key=f'{key}.dataset')


def check_class_names(cfg: Config) -> None:
    """``model.class_names`` must match the classes of every dataset of the config.

    Raises:
        ValueError: their numbers differ (the labels would index other classes than the
            model predicts).
    """
    names = cfg.get('model', {}).get('class_names')
    if not names or isinstance(names, str):
        return  # the model reports missing / malformed names itself
    for key in LOADERS:
        loader = cfg.get(key)
        if not loader or not loader.get('dataset'):
            continue
        try:
            classes = dataset_class_names(loader.dataset)
        except (KeyError, ValueError):
            continue
        if len(classes) != len(names):
            raise ValueError(
                f'model.class_names has {len(names)} names but {key}.dataset has '
                f'{len(classes)} classes (its metainfo.classes): the labels would not match '
                'the outputs. Leave model.class_names unset (it is taken from the dataset) or '
                'make the two lists agree.')
        if tuple(classes) != tuple(names):
            print_log(f'model.class_names differ from the class names of {key}.dataset; the '
                      'text encoder uses model.class_names', logger='current',
                      level=logging.WARNING)
