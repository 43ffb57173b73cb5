"""The class names a dataset config gives: its metainfo, or the defaults of its type."""
from mmseg.registry import DATASETS


def dataset_class_names(dataset_cfg: dict) -> tuple[str, ...]:
    """The class names a dataset config will use: its ``metainfo`` or its type's defaults.

    Wrappers that hold a ``dataset`` (``RepeatDataset``, ...) are looked through.
    """
    while 'dataset' in dataset_cfg and 'metainfo' not in dataset_cfg:
        dataset_cfg = dataset_cfg['dataset']
    metainfo = dataset_cfg.get('metainfo') or {}
    if metainfo.get('classes'):
        return tuple(metainfo['classes'])
    dataset_type = dataset_cfg.get('type')
    dataset_cls = DATASETS.get(dataset_type) if isinstance(dataset_type, str) else dataset_type
    if dataset_cls is None:
        raise KeyError(f'dataset type {dataset_type!r} is not registered in mmseg; cannot take '
                       'class names from it (set model.class_names)')
    classes = getattr(dataset_cls, 'METAINFO', {}).get('classes')
    if not classes:
        raise ValueError(f'dataset {dataset_type!r} defines no classes; set model.class_names '
                         'or the dataset metainfo')
    return tuple(classes)
