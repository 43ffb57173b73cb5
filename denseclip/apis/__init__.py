"""Inference and pictures: mmseg's API made to work with DenseCLIP configs
(:mod:`.inference`, :mod:`.inferencer`), pixel-text score maps (:mod:`.score_maps`) and the
demo's pictures (:mod:`.visualization`).

They pull in ``mmseg.apis`` and matplotlib, so each name is imported on first use (PEP 562):
``from denseclip.apis import init_model`` imports what ``init_model`` needs, no more. The
training visualiser that configs name, ``SegVisualizer``, plugs into the runner and lives in
``denseclip.engine``; it is served here as well.
"""
import importlib

from denseclip.engine.visualizer import SegVisualizer

#: Names served on first use -> the submodule that defines them.
LAZY = {
    'DenseCLIPInferencer': 'inferencer',
    'ScoreMapResult': 'score_maps',
    'demo_picture': 'visualization',
    'inference_model': 'inference',
    'init_model': 'inference',
    'predict_with_score_maps': 'score_maps',
    'render_picture': 'visualization',
    'save_picture': 'visualization',
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
