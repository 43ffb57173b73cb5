"""The training visualiser of the default runtime (``denseclip.engine.visualizer``): TensorBoard
is one ``--cfg-options`` away, and the JSON logs that tools/plot_logs.py reads stay."""
from pathlib import Path

import pytest
from mmengine.config import Config
from mmseg.registry import VISUALIZERS

import denseclip  # noqa: F401  (registers SegVisualizer)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'


@pytest.mark.parametrize('tensorboard', [False, True])
def test_tensorboard_is_one_cfg_option_away(tensorboard, tmp_path):
    cfg = Config.fromfile(CONFIG)
    if tensorboard:
        cfg.merge_from_dict({'visualizer.tensorboard': True})  # --cfg-options form
    visualizer_cfg = dict(cfg.visualizer, name=f'tb_{tensorboard}', save_dir=str(tmp_path))
    visualizer = VISUALIZERS.build(visualizer_cfg)
    assert visualizer.get_backend('LocalVisBackend') is not None  # the JSON logs stay
    assert (visualizer.get_backend('TensorboardVisBackend') is not None) == tensorboard
