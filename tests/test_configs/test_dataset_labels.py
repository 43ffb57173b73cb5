"""Label 0 ("other") is ignored through the datasets' ``reduce_zero_label``, which mmseg's
``LoadAnnotations`` takes from them; the transform's own key is deprecated (and warned about
once per run) in mmseg 1.x, so no pipeline sets it."""
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

from denseclip.datasets import generate_synthetic_ade20k

ROOT = Path(__file__).resolve().parents[2]
#: Segmentation datasets; the image-caption pairs of contrastive CLIP training (image_text*,
#: synthetic_captions*) have no label maps and are checked in test_clip_configs.py.
DATASET_CONFIGS = sorted(path for path in (ROOT / 'configs/_base_/datasets').glob('*.py')
                         if not path.stem.startswith(('image_text', 'synthetic_captions')))


def transforms(pipeline: list) -> list[dict]:
    """Every transform of a pipeline, those inside ``TestTimeAug`` included."""
    found = []
    for step in pipeline:
        found.append(step)
        for group in step.get('transforms', []):
            found.extend(transforms(group if isinstance(group, list) else [group]))
    return found


@pytest.mark.parametrize('path', DATASET_CONFIGS, ids=lambda path: path.stem)
def test_datasets_reduce_the_zero_label_and_pipelines_do_not(path):
    cfg = Config.fromfile(path)
    for name in ('train_pipeline', 'test_pipeline', 'tta_pipeline'):
        loaders = [step for step in transforms(cfg[name]) if step['type'] == 'LoadAnnotations']
        assert loaders, f'{name} loads no annotations'
        assert [step for step in loaders if 'reduce_zero_label' in step] == [], name
    for split in ('train', 'val', 'test'):
        assert cfg[f'{split}_dataloader'].dataset.reduce_zero_label is True, split


def test_quickstart_labels_are_reduced_without_a_warning(tmp_path):
    data_root = generate_synthetic_ade20k(tmp_path, num_train=1, num_val=1, image_size=48)
    cfg = Config.fromfile(ROOT / 'configs/quickstart/'
                          'denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py')
    init_default_scope('mmseg')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        dataset = DATASETS.build(dict(cfg.val_dataloader.dataset, data_root=str(data_root)))
        sample = dataset[0]['data_samples']
    assert [str(w.message) for w in caught if 'reduce_zero_label' in str(w.message)] == []
    stored = cv2.imread(sample.seg_map_path, cv2.IMREAD_UNCHANGED)
    assert set(np.unique(stored)) > {0}  # "other" and some classes
    expected = np.where(stored == 0, 255, stored.astype(np.int64) - 1)
    np.testing.assert_array_equal(sample.gt_sem_seg.data[0].numpy(), expected)
