"""Image-caption pairs listed in a JSONL or CSV file, for contrastive CLIP training."""
import csv
import json
import os.path as osp
from collections.abc import Iterator
from typing import Any

from mmengine.dataset import BaseDataset
from mmseg.registry import DATASETS

from .checks import listed
from .validation import DataError

FORMATS = ('.jsonl', '.csv')
KEYS = ('image', 'caption')


@DATASETS.register_module()
class ImageTextDataset(BaseDataset):
    """Image-caption pairs read from an annotation file.

    Formats, chosen by the file's extension:

    * ``.jsonl``: one JSON object per line, ``{"image": "images/0001.jpg", "caption": "..."}``
      (other keys are allowed and not read; blank lines are skipped);
    * ``.csv``: a header row naming the columns ``image`` and ``caption`` (others are not read),
      then one pair per row (quote captions that hold commas).

    Image paths are relative to ``data_root``, or to the folder of the annotation file when
    ``data_root`` is empty; absolute paths are taken as they are. ``ann_file`` itself is
    relative to ``data_root`` when that is given (as in every mmengine dataset).

    Every problem raises a :class:`~denseclip.datasets.DataError` that names the file and the
    line: malformed JSON or CSV, a missing key or column, an empty caption, image files that
    do not exist (``check_files``), and a file without pairs.

    Args:
        ann_file: The JSONL or CSV file.
        data_root: The folder of the images (and of a relative ``ann_file``).
        check_files: Check that every image file exists when the list is read (one ``stat``
            per image); turn off for remote or very large stores.
        **kwargs: mmengine's ``BaseDataset`` arguments (``pipeline``, ``lazy_init``, ...).
    """

    #: The tools leave it unwrapped by :class:`~denseclip.datasets.CheckedDataset`, whose checks
    #: are those of segmentation datasets (class names, label maps).
    checks_own_files = True

    def __init__(self, ann_file: str, data_root: str = '', check_files: bool = True,
                 **kwargs: Any):
        if not ann_file:
            raise DataError('ImageTextDataset needs ann_file: a .jsonl or .csv file of '
                            'image-caption pairs')
        self.check_files = check_files
        super().__init__(ann_file=ann_file, data_root=data_root, **kwargs)

    def image_root(self) -> str:
        """The folder that image paths are relative to."""
        return self.data_root or osp.dirname(self.ann_file)

    def load_data_list(self) -> list[dict]:
        """``[{'img_path': ..., 'caption': ...}, ...]`` in file order."""
        ann_file = self.ann_file
        suffix = osp.splitext(ann_file)[1].lower()
        if suffix not in FORMATS:
            raise DataError(f'annotation file {ann_file!r}: expected a .jsonl or .csv file of '
                            f'image-caption pairs, got the extension {suffix or "(none)"!r}')
        if not osp.isfile(ann_file):
            raise DataError(f'annotation file {ann_file!r} does not exist (data_root='
                            f'{self.data_root!r}); point ann_file (and data_root) at it')
        rows = _jsonl_rows if suffix == '.jsonl' else _csv_rows
        root = self.image_root()
        data_list, missing = [], []
        for line, image, caption in rows(ann_file):
            img_path = image if osp.isabs(image) else osp.join(root, image)
            if self.check_files and not osp.isfile(img_path):
                missing.append(f'{img_path} (line {line})')
            data_list.append(dict(img_path=img_path, caption=caption))
        if missing:
            raise DataError(f'annotation file {ann_file!r}: {len(missing)} of {len(data_list)} '
                            f'image files do not exist: {listed(missing)}. Image paths are '
                            f'relative to {root!r} (data_root, or the annotation file\'s '
                            'folder when data_root is empty)')
        if not data_list:
            raise DataError(f'annotation file {ann_file!r} holds no image-caption pairs')
        return data_list


def _pair(path: str, line: int, record: dict) -> tuple[int, str, str]:
    """Checks one record's ``image`` and ``caption`` values."""
    absent = [key for key in KEYS if key not in record]
    if absent:
        raise DataError(f'{path}, line {line}: no {" and no ".join(map(repr, absent))} key; '
                        f'each pair needs "image" (a path) and "caption" (text), found '
                        f'{sorted(record)}')
    image, caption = record['image'], record['caption']
    if not isinstance(image, str) or not image.strip():
        raise DataError(f'{path}, line {line}: "image" must be a non-empty path, got {image!r}')
    if not isinstance(caption, str) or not caption.strip():
        raise DataError(f'{path}, line {line}: the caption of {image!r} is empty or not text '
                        f'({caption!r}); write one, or remove the line')
    return line, image, caption.strip()


def _jsonl_rows(path: str) -> Iterator[tuple[int, str, str]]:
    with open(path, encoding='utf-8') as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataError(f'{path}, line {line}: not valid JSON ({err.msg} at column '
                                f'{err.colno}); expected {{"image": "...", "caption": "..."}}'
                                ) from None
            if not isinstance(record, dict):
                raise DataError(f'{path}, line {line}: expected a JSON object '
                                f'{{"image": "...", "caption": "..."}}, got '
                                f'{type(record).__name__}')
            yield _pair(path, line, record)


def _csv_rows(path: str) -> Iterator[tuple[int, str, str]]:
    with open(path, encoding='utf-8', newline='') as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        absent = [key for key in KEYS if key not in header]
        if absent:
            raise DataError(f'{path}, line 1: the header names the columns {header}, but '
                            f'"image" and "caption" are needed (missing: {absent})')
        try:
            for record in reader:
                if None in record:  # more fields than the header names
                    raise DataError(f'{path}, line {reader.line_num}: {len(header)} columns in '
                                    f'the header but more fields in this row; quote captions '
                                    'that hold commas')
                if any(value is None for value in record.values()):  # fewer fields
                    raise DataError(f'{path}, line {reader.line_num}: too few fields; expected '
                                    f'the columns {header}')
                yield _pair(path, reader.line_num, record)
        except csv.Error as err:
            raise DataError(f'{path}, line {reader.line_num}: malformed CSV ({err})') from None
