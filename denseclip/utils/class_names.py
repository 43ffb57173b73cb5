"""Class names for a DenseCLIP config, taken from its dataset when the model leaves them out."""
from mmengine.config import Config
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


def fill_class_names(cfg: Config) -> Config:
    """Sets ``cfg.model.class_names`` from the dataset when the config leaves it ``None``.

    Looks at the train, then the test, then the val dataloader. Models without a
    ``class_names`` key (plain mmseg segmentors) are left as they are.
    """
    model = cfg.get('model', {})
    if 'class_names' not in model or model['class_names'] is not None:
        return cfg
    for key in ('train_dataloader', 'test_dataloader', 'val_dataloader'):
        loader = cfg.get(key)
        if loader and loader.get('dataset'):
            model['class_names'] = list(dataset_class_names(loader['dataset']))
            return cfg
    raise ValueError('model.class_names is None and the config has no dataloader to take '
                     'them from; set model.class_names')
