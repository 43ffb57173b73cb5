"""Deployment: a segmentor exported to ONNX (:mod:`.export`) and run by ONNX Runtime with the
config's test-time steps redone in NumPy (:mod:`.ort`), with nothing but the ``.onnx`` file.

onnx, onnxscript and onnxruntime (``pip install -e .[deploy]``) are imported on first use, so
this room imports without them; ``import denseclip`` does not import it.
"""
from .errors import ExportError

__all__ = ['ExportError']
