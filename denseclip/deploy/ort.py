"""An exported segmentor run by ONNX Runtime, with mmseg's test-time steps redone around it.

:meth:`OrtSegmentor.predict` does what ``denseclip.apis.inference_model`` does for one image:
the config's test ``Resize`` (mmcv's, keep ratio), the data preprocessor's BGR -> RGB and
normalisation, whole or sliding-window inference (mmseg's windows and averaging; the crops of
an image go through the graph as one batch), and the bilinear resize of the logits back to the
image's size. Everything it needs is stored in the ``.onnx`` file (see
:func:`denseclip.deploy.export.deploy_metadata`).
"""
import json
from typing import Optional

import mmcv
import numpy as np
import torch
import torch.nn.functional as F

from denseclip.models.slide import slide_windows

from .errors import ExportError, import_optional, require
from .export import METADATA_KEY


def read_metadata(onnx_file: str, session) -> dict:
    props = session.get_modelmeta().custom_metadata_map
    require(METADATA_KEY in props,
            f'{onnx_file} has no {METADATA_KEY!r} metadata: export it with tools/export_onnx.py')
    return json.loads(props[METADATA_KEY])


class OrtSegmentor:
    """A segmentor exported by ``tools/export_onnx.py``, run by ONNX Runtime.

    Args:
        onnx_file: The exported ``.onnx`` file.
        providers: ONNX Runtime execution providers (default: the CPU's).
        threads: Intra-op threads (default: ONNX Runtime's, one per physical core; it does
            not read ``OMP_NUM_THREADS``).

    Attributes:
        class_names: The classes, in label order.
        palette: One RGB colour per class.
        meta: Everything the export stored (normalisation, ``test_cfg``, input shape).
    """

    def __init__(self, onnx_file: str, providers: Optional[list] = None,
                 threads: Optional[int] = None):
        ort = import_optional('onnxruntime')
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(onnx_file), options, providers=providers or ['CPUExecutionProvider'])
        except Exception as error:  # onnxruntime raises its own exception types
            raise ExportError(f'cannot load {onnx_file} into ONNX Runtime: {error}') from error
        self.onnx_file = str(onnx_file)
        self.meta = read_metadata(self.onnx_file, self.session)
        self.class_names: list[str] = self.meta['class_names']
        self.palette: list[list[int]] = self.meta['palette']
        self.input_name = self.session.get_inputs()[0].name

    # ----------------------------------------------------------------- the graph
    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits ``[N, K, H, W]`` of normalised images ``[N, 3, H, W]`` (float32)."""
        require(batch.ndim == 4 and batch.shape[1] == 3,
                f'expected normalised images [N, 3, H, W], got shape {batch.shape}')
        fixed = self.meta['input_shape']
        require(self.meta['dynamic_shape'] or list(batch.shape[2:]) == fixed,
                f'{self.onnx_file} was exported for {fixed[0]}x{fixed[1]} inputs, got '
                f'{batch.shape[2]}x{batch.shape[3]}; export with --dynamic-shape (or --shape) '
                'for other sizes')
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run(None, {self.input_name: batch})[0]

    def inference(self, batch: np.ndarray) -> np.ndarray:
        """Whole or slide inference (``test_cfg.mode``) at the batch's size, as mmseg's
        ``EncoderDecoder.inference``."""
        if self.meta['test_cfg']['mode'] == 'whole':
            return self.logits(batch)
        return self.slide_inference(batch)

    def slide_inference(self, batch: np.ndarray) -> np.ndarray:
        """mmseg's sliding window: crops of ``crop_size`` every ``stride``, logits averaged over
        the crops covering each pixel. All crops of the batch run as one batch."""
        test_cfg = self.meta['test_cfg']
        num, _, height, width = batch.shape
        windows = slide_windows((height, width), test_cfg['crop_size'], test_cfg['stride'])
        # every crop has the same size: [len(windows) * N, 3, h, w], crop-major
        crops = np.concatenate([batch[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in windows])
        logits = self.logits(crops)
        preds = np.zeros((num, logits.shape[1], height, width), np.float32)
        counts = np.zeros((1, 1, height, width), np.float32)
        for index, (y1, y2, x1, x2) in enumerate(windows):
            preds[:, :, y1:y2, x1:x2] += logits[index * num:(index + 1) * num]
            counts[:, :, y1:y2, x1:x2] += 1
        return preds / counts

    # ----------------------------------------------------------------- one image
    def preprocess(self, image_bgr: np.ndarray, resize: bool = True) -> np.ndarray:
        """The test resize (if ``resize``), channel order and normalisation:
        ``[1, 3, h, w]`` float32."""
        require(image_bgr.ndim == 3 and image_bgr.shape[2] == 3 and image_bgr.dtype == np.uint8,
                f'expected a BGR uint8 image [H, W, 3], got {image_bgr.dtype} {image_bgr.shape}')
        step = self.meta['test_resize']
        if step is not None and resize:
            if step['keep_ratio']:
                image_bgr = mmcv.imrescale(image_bgr, tuple(step['scale']),
                                           interpolation=step['interpolation'])
            else:
                image_bgr = mmcv.imresize(image_bgr, tuple(step['scale']),
                                          interpolation=step['interpolation'])
        image = image_bgr[..., ::-1] if self.meta['bgr_to_rgb'] else image_bgr
        image = (image.astype(np.float32) - np.float32(self.meta['mean'])) / np.float32(
            self.meta['std'])
        return np.ascontiguousarray(image.transpose(2, 0, 1)[None])  # HWC -> 1CHW

    def predict(self, image_bgr: np.ndarray, resize: bool = True) -> np.ndarray:
        """Logits ``[K, H, W]`` (float32) of a BGR uint8 image, at its own size.

        Args:
            image_bgr: ``[H, W, 3]`` uint8, BGR (as ``cv2.imread`` gives it).
            resize: Apply the config's test resize first; ``False`` for an image already at
                the test size (benchmarks).
        """
        logits = self.inference(self.preprocess(image_bgr, resize))
        # as mmseg's postprocess_result: bilinear back to the original size
        resized = F.interpolate(torch.from_numpy(logits), size=image_bgr.shape[:2],
                                mode='bilinear', align_corners=self.meta['align_corners'])
        return resized[0].numpy()
