"""Inference helpers: mmseg's API made to work with DenseCLIP configs, score maps, pictures."""
from .inference import init_model
from .inferencer import DenseCLIPInferencer
from .predict import ScoreMapResult, inference_model, predict_with_score_maps
from .visualisation import demo_picture, render_picture, save_picture
from .visualizer import SegVisualizer

__all__ = [
    'DenseCLIPInferencer', 'ScoreMapResult', 'SegVisualizer', 'demo_picture',
    'inference_model', 'init_model', 'predict_with_score_maps', 'render_picture',
    'save_picture'
]
