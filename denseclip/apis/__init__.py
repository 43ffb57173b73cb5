"""Inference helpers: mmseg's API, made to work with DenseCLIP configs."""
from mmseg.apis import inference_model

from .inference import init_model

__all__ = ['inference_model', 'init_model']
