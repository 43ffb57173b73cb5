"""The class names a dataset config gives (its metainfo, or the defaults of its type), and the
one palette of classes that name no colours."""
import colorsys

from mmseg.registry import DATASETS

from denseclip.clip import check_class_names


def _innermost(dataset_cfg: dict, key: str) -> tuple[dict, str]:
    """The dataset config inside wrappers (``RepeatDataset``, ...) that hold a ``dataset``
    without their own ``metainfo``, and its config key."""
    while 'dataset' in dataset_cfg and 'metainfo' not in dataset_cfg:
        dataset_cfg, key = dataset_cfg['dataset'], f'{key}.dataset'
    return dataset_cfg, key


def _dataset_class(dataset_cfg: dict):
    """The registered class of a dataset config, or None."""
    kind = dataset_cfg.get('type')
    return DATASETS.get(kind) if isinstance(kind, str) else kind


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
    dataset_cfg, key = _innermost(dataset_cfg, key)
    metainfo = dataset_cfg.get('metainfo') or {}
    if metainfo.get('classes'):
        return tuple(check_class_names(metainfo['classes'], f'{key}.metainfo.classes'))
    dataset_type = dataset_cfg.get('type')
    dataset_cls = _dataset_class(dataset_cfg)
    if dataset_cls is None:
        raise KeyError(f'dataset type {dataset_type!r} is not registered in mmseg; cannot take '
                       'class names from it (set model.class_names)')
    classes = getattr(dataset_cls, 'METAINFO', {}).get('classes')
    if not classes:
        raise KeyError(f'dataset {dataset_type!r} defines no classes; set model.class_names '
                         'or the dataset metainfo')
    return tuple(check_class_names(classes, f'{key} ({dataset_type}.METAINFO classes)'))


def default_palette(num_classes: int) -> list[list[int]]:
    """Fixed, well-separated RGB colours for classes that come without a palette.

    Hues step by the golden ratio around the colour wheel (neighbouring classes get distant
    hues), and brightness and saturation alternate over three levels, so that even many
    classes stay apart. Every tool uses it (training's and testing's pictures, the demo,
    folder inference, ONNX export), so a class has one colour everywhere.
    """
    palette = []
    for index in range(num_classes):
        hue = (index * 0.6180339887498949) % 1.0
        value = (0.95, 0.75, 0.55)[index % 3]
        saturation = (0.85, 0.6, 1.0)[(index // 3) % 3]
        palette.append([round(channel * 255)
                        for channel in colorsys.hsv_to_rgb(hue, saturation, value)])
    return palette


def fill_palette(dataset_cfg: dict) -> bool:
    """Gives a dataset config whose ``metainfo`` names classes but no colours the
    :func:`default_palette`; returns whether it did.

    mmseg would draw random colours (seed 42: two classes can look alike) that no other tool
    shares. Classes that are all among the dataset type's own keep the type's colours, which
    mmseg picks for them. Wrappers (``RepeatDataset``, ...) are looked through.
    """
    dataset_cfg, _ = _innermost(dataset_cfg, 'dataset')
    metainfo = dataset_cfg.get('metainfo') or {}
    classes = metainfo.get('classes')
    if not classes or metainfo.get('palette'):
        return False
    own = getattr(_dataset_class(dataset_cfg), 'METAINFO', {})
    if own.get('palette') and set(classes) <= set(own.get('classes', ())):
        return False
    dataset_cfg['metainfo'] = dict(metainfo, palette=default_palette(len(classes)))
    return True
