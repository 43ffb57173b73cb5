"""Clear errors for data that is missing, empty, unpaired, corrupt or wrongly labelled.

mmseg lists a dataset folder and loads its files without checking them: a mistyped
``data_root`` fails with a bare ``FileNotFoundError``, an empty folder with "need at least one
array to concatenate", a corrupt label map with "'NoneType' object has no attribute
'squeeze'", a label value beyond the classes with an index error deep inside the loss (a
device-side assert on GPUs), a label map of another size than its image with misaligned
training pairs or a shape error in the loss or the metric. :class:`CheckedDataset` wraps any
dataset config and turns each of these into a :class:`DataError` that names the config key,
the file, what was expected and how to fix it. ``tools/train.py`` and ``tools/test.py`` wrap
every dataloader's dataset with it (:func:`wrap_datasets`); the checks themselves live in
:mod:`.checks`, which ``tools/check_dataset.py`` runs too.
"""
import logging
from typing import Any, Optional, Union

from mmengine.config import Config
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from mmseg.registry import DATASETS

from .checks import (LabelSpace, classes_problem, empty_problem, folder_problem, lazy,
                     listing_problem, load_problem, orientation_applied, pair_problems,
                     seg_datasets, size_problem)
from .class_names import dataset_class_names

LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
#: Ends the errors raised while a job loads samples: the other bad files are found up front.
SCAN_HINT = 'Run python tools/check_dataset.py CONFIG to list every problem of the dataset at once.'


class DataError(RuntimeError):
    """A dataset is missing, empty, unpaired, corrupt or holds labels that are not classes."""


def _with_hint(problem: str) -> str:
    return f'{problem.rstrip(".")}. {SCAN_HINT}'


def _raise_if(problem: Optional[str], hint: bool = False) -> None:
    if problem:
        raise DataError(_with_hint(problem) if hint else problem)


@DATASETS.register_module()
class CheckedDataset:
    """A dataset wrapper that checks the wrapped dataset's files and labels.

    When the dataset is initialised: its image (and label) folders exist, it holds images,
    every image has a label map and every label map an image. When a sample is loaded: its
    label map has the size of its image (read from the file headers), a failure names the
    sample's files (and which one cannot be decoded), and the label map holds single-channel
    class indices below the number of classes, or ``ignore_index``.

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
            dataset = DATASETS.build(lazy(dataset))
        self.dataset = dataset
        _raise_if(classes_problem(dataset, cfg_key))
        self._labels = LabelSpace.of(dataset, cfg_key)
        inner = next((inner for inner, _ in seg_datasets(dataset, cfg_key)), None)
        self._orientation = orientation_applied(inner) if inner is not None else True
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
        for dataset, key in seg_datasets(self.dataset, self.cfg_key):
            _raise_if(folder_problem(dataset, key))
        try:
            self.dataset.full_init()
        except Exception as err:  # noqa: BLE001  (mmseg raises bare errors while listing)
            raise DataError(listing_problem(self.cfg_key, err)) from err
        if len(self.dataset) == 0:
            raise DataError(empty_problem(self.cfg_key))
        for dataset, key in seg_datasets(self.dataset, self.cfg_key):
            problems = pair_problems(dataset, key)
            _raise_if(problems[0] if problems else None)
        self._fully_initialized = True

    def __getitem__(self, idx: int) -> Any:
        info = self.dataset.get_data_info(idx)
        _raise_if(size_problem(info, self.cfg_key, self._orientation), hint=True)
        try:
            data = self.dataset[idx]
        except DataError:
            raise
        except Exception as err:  # noqa: BLE001  (any transform may fail on a bad file)
            raise DataError(_with_hint(load_problem(info, idx, self.cfg_key, err))) from err
        if self.check_labels:
            self._check_label_values(data)
        return data

    def _check_label_values(self, data: Any) -> None:
        samples = data.get('data_samples') if isinstance(data, dict) else None
        for sample in samples if isinstance(samples, list) else [samples]:
            if sample is None or 'gt_sem_seg' not in sample:
                continue
            labels = sample.gt_sem_seg.data.numpy()  # [1, H, W] (a colour map: [H, W, 3])
            if labels.ndim == 3 and labels.shape[0] == 1:
                labels = labels[0]
            _raise_if(self._labels.problem(labels, sample.metainfo.get('seg_map_path'),
                                           bool(sample.metainfo.get('reduce_zero_label'))),
                      hint=True)


def checks_own_files(dataset_cfg: dict) -> bool:
    """Whether the dataset class checks its own files (``checks_own_files = True``, as
    :class:`~denseclip.datasets.ImageTextDataset` does): it has no class names or label maps
    for :class:`CheckedDataset` to check."""
    dataset_type = dataset_cfg.get('type')
    if isinstance(dataset_type, str):
        dataset_type = DATASETS.get(dataset_type)
    return bool(getattr(dataset_type, 'checks_own_files', False))


def wrap_datasets(cfg: Config) -> None:
    """Wraps the dataset of every dataloader in ``cfg`` with :class:`CheckedDataset`, except
    datasets that check their own files."""
    for key in LOADERS:
        loader = cfg.get(key)
        if not loader or not loader.get('dataset') or checks_own_files(loader.dataset):
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
            classes = dataset_class_names(loader.dataset, f'{key}.dataset')
        except KeyError:  # no classes, or a type that is not registered: building says so
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
