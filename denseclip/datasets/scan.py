"""Every dataset check over every sample, in one pass (``tools/check_dataset.py``).

``tools/train.py`` meets a bad file when it samples it, perhaps on iteration 37 000, and stops
at the first. :func:`scan_loaders` runs the same checks (:mod:`.checks`) over every sample of a
config's datasets up front, collects every problem and counts the pixels of each class. Samples
are loaded as their pipeline loads them, without the augmentations: the pipeline's own
``LoadImageFromFile`` and ``LoadAnnotations`` (so ``reduce_zero_label`` and ``label_map``
apply), in DataLoader workers.
"""
import os.path as osp
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from mmengine.config import Config
from mmseg.registry import DATASETS
from torch.utils.data import DataLoader, Dataset

from .checks import (LabelSpace, classes_problem, empty_problem, folder_problem, lazy,
                     listing_problem, load_problem, orientation_applied, pair_problems,
                     sample_loaders, seg_datasets, size_problem)
from .validation import LOADERS, CheckedDataset

NUM_VALUES = 256  # label maps are loaded as uint8
Progress = Callable[[str, int, int], None]  # (config key, samples done, samples in all)


@dataclass
class DatasetReport:
    """What :func:`scan_dataset` found in one dataset of a config.

    Attributes:
        key: The dataset's config key (``'train_dataloader.dataset'``).
        classes: Its class names; value ``i`` of a loaded label map is ``classes[i]``.
        ignore_index: The value of pixels without a label.
        folders: The image folders it lists.
        samples: Samples checked.
        pixels: Pixels per loaded label value ``[256]``.
        label_maps: Label maps holding each value ``[256]``.
        problems: Every problem found, as messages that name the file and the fix.
        same_as: The key of an identical dataset checked before (this one was not scanned).
    """
    key: str
    classes: tuple[str, ...] = ()
    ignore_index: int = 255
    folders: list[str] = field(default_factory=list)
    samples: int = 0
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(NUM_VALUES, np.int64))
    label_maps: np.ndarray = field(default_factory=lambda: np.zeros(NUM_VALUES, np.int64))
    problems: list[str] = field(default_factory=list)
    same_as: Optional[str] = None

    def add(self, problems: list[str], counts: Optional[np.ndarray]) -> None:
        """Adds one sample: its problems and the pixels per label value of its label map."""
        self.samples += 1
        self.problems += problems
        if counts is not None:
            self.pixels += counts
            self.label_maps += counts > 0

    def summary(self) -> str:
        """Samples, the class histogram and the problems, as printed by the tool."""
        if self.same_as:
            return f'{self.key}: the same dataset as {self.same_as} (checked above)'
        where = ', '.join(repr(folder) for folder in self.folders) or 'no folder'
        lines = [f'{self.key}: {self.samples} samples in {where}, {len(self.classes)} classes']
        if self.pixels.any():
            lines += self._histogram()
        lines.append(f'  problems: {len(self.problems) or "none"}')
        lines += [f'  {index}. {problem}' for index, problem in enumerate(self.problems, 1)]
        return '\n'.join(lines)

    def _histogram(self) -> list[str]:
        total = int(self.pixels.sum())
        width = max(len('(not a class)'), *(len(name) for name in self.classes))
        values = list(range(len(self.classes)))
        rows = [(str(value), name, self.pixels[value], self.label_maps[value])
                for value, name in zip(values, self.classes)]
        if 0 <= self.ignore_index < NUM_VALUES:
            values.append(self.ignore_index)
            rows.append((str(self.ignore_index), '(ignored)', self.pixels[self.ignore_index],
                         self.label_maps[self.ignore_index]))
        others = np.ones(NUM_VALUES, bool)
        others[values] = False
        if self.pixels[others].any():  # listed among the problems
            rows.append(('other', '(not a class)', self.pixels[others].sum(), None))
        lines = [f'  {"value":>5}  {"class":<{width}}  {"pixels":>13}  {"share":>6}  '
                 'label maps']
        for value, name, pixels, maps in rows:
            maps = '-' if maps is None else f'{maps:,}'
            lines.append(f'  {value:>5}  {name:<{width}}  {pixels:>13,}  '
                         f'{100 * pixels / total:>5.1f}%  {maps:>10}')
        absent = [name for value, name in enumerate(self.classes) if not self.pixels[value]]
        if absent:
            lines.append(f'  in no label map: {", ".join(absent)}')
        return lines


class _SampleChecks(Dataset):
    """The per-sample checks of one segmentation dataset, sample by sample (so that
    DataLoader workers can run them): each item is ``(problems, pixels per label value)``."""

    def __init__(self, dataset: Any, key: str):
        self.dataset = dataset
        self.key = key
        self.labels = LabelSpace.of(dataset, key)
        self.orientation = orientation_applied(dataset)
        self.image_loader, self.label_loader = sample_loaders(dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> tuple[list[str], Optional[np.ndarray]]:
        info = self.dataset.get_data_info(idx)
        seg_path = info.get('seg_map_path')
        if seg_path and not osp.isfile(seg_path):
            return [], None  # an image without a label map: pair_problems lists it
        problems = [problem for problem in [size_problem(info, self.key, self.orientation)]
                    if problem]
        try:
            results = self.image_loader(dict(info))
            if seg_path:
                results = self.label_loader(results)
        except Exception as err:  # noqa: BLE001  (any bad file: named by load_problem)
            return problems + [load_problem(info, idx, self.key, err)], None
        if not seg_path:
            return problems, None
        labels = results['gt_seg_map']  # [H, W] uint8 (a colour map: [H, W, 3])
        problem = self.labels.problem(labels, seg_path, bool(results.get('reduce_zero_label')))
        problems += [problem] if problem else []
        counts = np.bincount(labels.ravel(), minlength=NUM_VALUES) if labels.ndim == 2 else None
        return problems, counts


def _unchanged(item: Any) -> Any:
    return item


def _check_samples(checks: _SampleChecks,
                   num_workers: int) -> Iterator[tuple[list[str], Optional[np.ndarray]]]:
    if num_workers == 0:
        return (checks[idx] for idx in range(len(checks)))
    return iter(DataLoader(checks, batch_size=None, num_workers=num_workers,
                           collate_fn=_unchanged))


def scan_dataset(dataset_cfg: dict, key: str, num_workers: int = 0,
                 progress: Optional[Progress] = None) -> DatasetReport:
    """Runs every dataset check over every sample of a dataset config.

    Args:
        dataset_cfg: The dataset config (wrappers such as ``ConcatDataset`` included; a
            ``CheckedDataset`` is looked through).
        key: Where it sits in the config, used in the messages.
        num_workers: DataLoader worker processes that load the samples (0: this process).
        progress: Called after each sample with the key, the samples done and in all.

    Returns:
        The report: samples, pixels per class, and every problem found.
    """
    if dataset_cfg.get('type') in ('CheckedDataset', CheckedDataset):
        dataset_cfg = dataset_cfg['dataset']
    report = DatasetReport(key)
    try:
        dataset = DATASETS.build(lazy(dataset_cfg))
    except Exception as err:  # noqa: BLE001  (a wrong type or argument in the config)
        report.problems.append(f'{key}: the dataset cannot be built ({type(err).__name__}: '
                               f'{err}); fix its config')
        return report
    problem = classes_problem(dataset, key)
    if problem is not None:
        report.problems.append(problem)
        return report
    labels = LabelSpace.of(dataset, key)
    report.classes, report.ignore_index = tuple(dataset.metainfo['classes']), labels.ignore_index
    for inner, inner_key in seg_datasets(dataset, key):
        report.folders.append(inner.data_prefix.get('img_path') or inner.data_root or '')
        _scan_listed(inner, inner_key, report, num_workers, progress)
    return report


def _scan_listed(dataset: Any, key: str, report: DatasetReport, num_workers: int,
                 progress: Optional[Progress]) -> None:
    """Adds the folder, listing, pair and per-sample problems of one segmentation dataset."""
    problem = folder_problem(dataset, key)
    if problem is None:
        try:
            dataset.full_init()
        except Exception as err:  # noqa: BLE001  (mmseg raises bare errors while listing)
            problem = listing_problem(key, err)
    if problem is None and len(dataset) == 0:
        problem = empty_problem(key)
    if problem is not None:
        report.problems.append(problem)
        return
    report.problems += pair_problems(dataset, key, max_listed=None)
    checks = _SampleChecks(dataset, key)
    for done, (problems, counts) in enumerate(_check_samples(checks, num_workers), 1):
        report.add(problems, counts)
        if progress is not None:
            progress(key, done, len(checks))


def scan_loaders(cfg: Config, num_workers: int = 0,
                 progress: Optional[Progress] = None) -> list[DatasetReport]:
    """:func:`scan_dataset` for the dataset of each dataloader of ``cfg``; a dataset that
    equals one checked before (``test_dataloader = val_dataloader``) is not scanned again."""
    reports: list[DatasetReport] = []
    checked: list[tuple[dict, str]] = []
    for loader_key in LOADERS:
        loader = cfg.get(loader_key)
        if not loader or not loader.get('dataset'):
            continue
        key, dataset_cfg = f'{loader_key}.dataset', loader['dataset']
        same_as = next((seen_key for seen, seen_key in checked if seen == dataset_cfg), None)
        if same_as is not None:
            reports.append(DatasetReport(key, same_as=same_as))
            continue
        checked.append((dataset_cfg, key))
        reports.append(scan_dataset(dataset_cfg, key, num_workers, progress))
    return reports
