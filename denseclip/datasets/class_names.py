"""The class names a dataset config gives: its metainfo, or the defaults of its type."""
from mmseg.registry import DATASETS

from denseclip.clip import check_class_names


def dataset_class_names(dataset_cfg: dict, key: str = 'dataset') -> tuple[str, ...]:
    """The class names a dataset config will use: its ``metainfo`` or its type's defaults.

    Wrappers that hold a ``dataset`` (``RepeatDataset``, ...) are looked through. The names
    are checked (:func:`~denseclip.clip.check_class_names`: non-empty, no name twice), and an
    error names ``key`` (the config key of the dataset, ``'train_dataloader.dataset'``).

    Raises:
        KeyError: the dataset type is not registered, or neither it nor the config names
            classes.
        ValueError, TypeError: the names are malformed or repeated.
    """
    while 'dataset' in dataset_cfg and 'metainfo' not in dataset_cfg:
        dataset_cfg, key = dataset_cfg['dataset'], f'{key}.dataset'
    metainfo = dataset_cfg.get('metainfo') or {}
    if metainfo.get('classes'):
        return tuple(check_class_names(metainfo['classes'], f'{key}.metainfo.classes'))
    dataset_type = dataset_cfg.get('type')
    dataset_cls = DATASETS.get(dataset_type) if isinstance(dataset_type, str) else dataset_type
    if dataset_cls is None:
        raise KeyError(f'dataset type {dataset_type!r} is not registered in mmseg; cannot take '
                       'class names from it (set model.class_names)')
    classes = getattr(dataset_cls, 'METAINFO', {}).get('classes')
    if not classes:
        raise KeyError(f'dataset {dataset_type!r} defines no classes; set model.class_names '
                         'or the dataset metainfo')
    return tuple(check_class_names(classes, f'{key} ({dataset_type}.METAINFO classes)'))
