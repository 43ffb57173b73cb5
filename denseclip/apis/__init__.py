"""Inference helpers: mmseg's API made to work with DenseCLIP configs, score maps, pictures.

Only the visualiser that ``configs/_base_/default_runtime.py`` names (``SegVisualizer``, in
mmseg's ``VISUALIZERS``) is imported with the package. The rest pulls in ``mmseg.apis`` and
matplotlib, so it is imported on first use (PEP 562): ``from denseclip.apis import
init_model`` works as before, and ``import denseclip`` stays cheap.
"""
import importlib

from .visualizer import SegVisualizer

#: Names served on first use -> the submodule that defines them.
LAZY = {
    'DenseCLIPInferencer': 'inferencer',
    'ScoreMapResult': 'predict',
    'demo_picture': 'visualisation',
    'inference_model': 'predict',
    'init_model': 'inference',
    'predict_with_score_maps': 'predict',
    'render_picture': 'visualisation',
    'save_picture': 'visualisation',
}

__all__ = ['SegVisualizer', *LAZY]


def __getattr__(name: str):
    if name not in LAZY:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(f'.{LAZY[name]}', __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(LAZY))
