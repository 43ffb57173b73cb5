"""The training visualiser of the default runtime: mmseg's, with a TensorBoard switch."""
import copy
from typing import Optional, Union

from mmseg.registry import VISUALIZERS
from mmseg.visualization import SegLocalVisualizer

TENSORBOARD = dict(type='TensorboardVisBackend')


@VISUALIZERS.register_module()
class SegVisualizer(SegLocalVisualizer):
    """``SegLocalVisualizer`` that also logs to TensorBoard when ``tensorboard=True``.

    mmengine's ``--cfg-options`` cannot append a dict to ``vis_backends``; this flag makes
    TensorBoard one option away: ``--cfg-options visualizer.tensorboard=True`` (needs
    ``pip install tensorboard``; event files go to ``WORK_DIR/TIMESTAMP/vis_data``). The JSON
    logs of ``LocalVisBackend``, which ``tools/plot_logs.py`` reads, are kept.

    Args:
        tensorboard: Add a ``TensorboardVisBackend`` to ``vis_backends``.
        vis_backends: As for ``SegLocalVisualizer``.
        **kwargs: The other arguments of ``SegLocalVisualizer``.
    """

    def __init__(self, name: str = 'visualizer', tensorboard: bool = False,
                 vis_backends: Optional[Union[list, dict]] = None, **kwargs):
        vis_backends = copy.deepcopy(vis_backends)
        if isinstance(vis_backends, dict):
            vis_backends = [vis_backends]
        vis_backends = list(vis_backends or [])
        has_tensorboard = any(isinstance(backend, dict) and backend.get('type') ==
                              TENSORBOARD['type'] for backend in vis_backends)
        if tensorboard and not has_tensorboard:
            vis_backends.append(dict(TENSORBOARD))
        super().__init__(name=name, vis_backends=vis_backends, **kwargs)
