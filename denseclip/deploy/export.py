"""Export of a segmentor to ONNX: the normalised image ``[N, 3, H, W]`` to its logits
``[N, K, H, W]`` (mmseg's ``encode_decode``), with what inference needs stored in the file.

The graph is traced by PyTorch's dynamo exporter (``torch.onnx.export(dynamo=True)``, the
default of torch 2.x). The TorchScript exporter (``dynamo=False``) is not used: with dynamic
image sizes it bakes the output sizes of mmseg's ``Upsample`` (``int(size * factor)``) into
the graph, and the logits of any other size come out wrong.

DenseCLIP's text branch is split where the image enters it:

- the text encoder's class embeddings ``[1, K, D]`` (post-model prompting, or none) do not
  depend on the image: they are computed once here and stored in the graph as a constant, and
  the text encoder is not exported (for RN50, 63 M parameters fewer);
- the context decoder and the score map depend on the image and stay in the graph.

Pre-model prompting (``'pre'``, ``'pre+post'``) feeds the image into the text encoder; such
models are refused (:class:`ExportError`) rather than exported with the text encoder in the
graph, which would run it for every image and crop. So are segmentors without a decode head
(``ZeroShotCLIPSegmentor``): what is exported is DenseCLIP with post-model or no prompting, or
a plain mmseg ``EncoderDecoder``.
"""
import copy
import json
import os
import os.path as osp
import time
from collections.abc import Sequence
from typing import Optional

import torch
from mmseg.models.utils import Upsample, resize
from mmseg.registry import DATASETS
from torch import nn

from denseclip.datasets import default_palette

from .errors import ExportError, import_optional, require

#: Key of the JSON metadata in the ONNX file's ``metadata_props``.
METADATA_KEY = 'denseclip'
INPUT_NAME, OUTPUT_NAME = 'input', 'logits'
#: Test-pipeline steps that read files or pack results: the runtime does these itself.
PIPELINE_IO = ('LoadImageFromFile', 'LoadImageFromNDArray', 'LoadAnnotations', 'PackSegInputs')


def check_exportable(segmentor: nn.Module) -> None:
    """Refuses, by its type, a segmentor whose ``encode_decode`` is not backbone (-> DenseCLIP's
    text branch) -> neck -> decode head, the only one :class:`ExportedSegmentor` rebuilds.

    Raises:
        ExportError: the segmentor has no decode head (e.g. ``ZeroShotCLIPSegmentor``), or it
            uses pre-model prompting (:func:`folded_class_embeddings`).
    """
    if not getattr(segmentor, 'with_decode_head', False):
        raise ExportError(
            f'model.type={type(segmentor).__name__!r} cannot be exported: it has no decode '
            'head, and export takes an mmseg EncoderDecoder with one - DenseCLIP with '
            "prompting='post' or 'none', or a plain EncoderDecoder; segment with the PyTorch "
            'model instead (tools/infer.py --backend torch, tools/test.py)')
    folded_class_embeddings(segmentor)


def folded_class_embeddings(segmentor: nn.Module) -> Optional[torch.Tensor]:
    """The image-independent text embeddings ``[1, K, D]`` of a DenseCLIP, ``None`` for
    segmentors without a text branch.

    Raises:
        ExportError: the model uses pre-model prompting (its text depends on the image).
    """
    if not hasattr(segmentor, 'class_embeddings'):
        return None
    if segmentor.pre_prompter is not None:
        raise ExportError(
            f'model.prompting={segmentor.prompting!r}: pre-model prompting feeds the image into '
            'the text encoder, so its class embeddings cannot be folded into constants, and '
            "export does not support it; export a model with prompting='post' or 'none'")
    with torch.no_grad():
        # the text encoder runs here, once, outside the graph
        return segmentor.text_encoder(segmentor.texts, segmentor.contexts).detach().clone()


class IntegerUpsample(nn.Module):
    """mmseg's ``Upsample`` by an integer factor, with output sizes the exporter keeps symbolic.

    mmseg computes ``int(size * factor)``, which the exporter evaluates at the traced size; the
    product of integers gives the same sizes and stays a function of the input's size.
    """

    def __init__(self, upsample: Upsample):
        super().__init__()
        self.factor = int(upsample.scale_factor)
        self.mode, self.align_corners = upsample.mode, upsample.align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (x.shape[-2] * self.factor, x.shape[-1] * self.factor)
        return resize(x, size, None, self.mode, self.align_corners)


def with_integer_upsamples(model: nn.Module) -> nn.Module:
    """``model`` (changed in place) with every integer-factor mmseg ``Upsample`` replaced by
    :class:`IntegerUpsample`."""
    for name, child in list(model.named_children()):
        if (isinstance(child, Upsample) and not child.size
                and float(child.scale_factor).is_integer()):
            setattr(model, name, IntegerUpsample(child))
        else:
            with_integer_upsamples(child)
    return model


class ExportedSegmentor(nn.Module):
    """What is exported: ``encode_decode`` of an mmseg ``EncoderDecoder`` without the metas.

    Normalised images ``[N, 3, H, W]`` -> logits ``[N, K, H, W]`` (the decode head's, resized
    bilinearly to the input as mmseg's head does). A DenseCLIP's class embeddings are a buffer
    (:func:`folded_class_embeddings`); the text encoder is dropped. The segmentor is copied.
    """

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        check_exportable(segmentor)
        class_embeddings = folded_class_embeddings(segmentor)
        # copied without the text encoder: its output is the buffer below
        text_encoder = getattr(segmentor, 'text_encoder', None)
        segmentor = copy.deepcopy(segmentor, memo={id(text_encoder): None}).eval()
        if class_embeddings is not None:
            self.register_buffer('class_embeddings', class_embeddings)
        else:
            self.class_embeddings = None
        self.segmentor = with_integer_upsamples(segmentor)
        self.eval()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        segmentor = self.segmentor
        if self.class_embeddings is None:
            features = segmentor.extract_feat(inputs)
        else:
            features = segmentor.forward_features(inputs, self.class_embeddings)[0]
            features = segmentor._through_neck(features)
        logits = segmentor.decode_head(features)
        # a torch.Size img_shape makes mmseg's head resize to it (as in its slide inference)
        return segmentor.decode_head.predict_by_feat(logits, [dict(img_shape=inputs.shape[2:])])


def _test_resize(cfg) -> Optional[dict]:
    """The ``Resize`` of the config's test pipeline (the runtime's only transform), or None."""
    resize_step = None
    for step in cfg.get('test_pipeline') or []:
        if step['type'] in PIPELINE_IO:
            continue
        require(step['type'] == 'Resize' and resize_step is None and 'scale' in step,
                f'test_pipeline step {step!r}: the ONNX runtime reproduces one Resize '
                '(scale, keep_ratio) and loading/packing only')
        resize_step = dict(scale=list(step['scale']), keep_ratio=bool(step.get('keep_ratio')),
                           interpolation=step.get('interpolation', 'bilinear'))
    return resize_step


def _palette(cfg, meta: Optional[dict], class_names: list) -> list:
    """The checkpoint's palette, else the config's dataset's (if its classes are the model's),
    else the demo's fallback colours."""
    palette = (meta or {}).get('palette')
    if palette is None:
        dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
        metainfo = dict(getattr(DATASETS.get(dataset.get('type', '')), 'METAINFO', {}))
        metainfo.update(dataset.get('metainfo') or {})
        if list(metainfo.get('classes', ())) == class_names:
            palette = metainfo.get('palette')
    if palette is None or len(palette) != len(class_names):
        palette = default_palette(len(class_names))
    return [list(map(int, colour)) for colour in palette]


def deploy_metadata(cfg, segmentor: nn.Module, shape: Sequence[int], dynamic: bool) -> dict:
    """What :class:`~denseclip.deploy.ort.OrtSegmentor` needs besides the graph."""
    preprocessor = cfg.model.data_preprocessor
    # mmseg pads test images by the data preprocessor's test_cfg (model.test_cfg has no
    # padding keys); the runtime does not pad, so its logits would differ
    padding = dict(preprocessor.get('test_cfg') or {})
    require(not padding.get('size') and not padding.get('size_divisor'),
            f'model.data_preprocessor.test_cfg={padding!r}: test-time padding (size / '
            'size_divisor) is not supported by export; remove it from the config (or '
            '--cfg-options model.data_preprocessor.test_cfg=None)')
    test_cfg = dict(segmentor.test_cfg)
    meta = getattr(segmentor, 'dataset_meta', None)
    class_names = list(getattr(segmentor, 'class_names', None) or (meta or {}).get('classes')
                       or [str(index) for index in range(segmentor.out_channels)])
    return dict(
        class_names=class_names, palette=_palette(cfg, meta, class_names),
        mean=list(map(float, preprocessor.mean)), std=list(map(float, preprocessor.std)),
        bgr_to_rgb=bool(preprocessor.get('bgr_to_rgb', False)),
        test_cfg=dict(mode=test_cfg.get('mode', 'whole'),
                      crop_size=list(test_cfg['crop_size']) if 'crop_size' in test_cfg else None,
                      stride=list(test_cfg['stride']) if 'stride' in test_cfg else None),
        test_resize=_test_resize(cfg), align_corners=bool(segmentor.align_corners),
        input_shape=[None if dynamic else int(side) for side in shape], dynamic_shape=dynamic)


def export_onnx(segmentor: nn.Module, out: str, shape: Sequence[int], metadata: dict,
                dynamic: bool = False, opset: Optional[int] = None) -> dict:
    """Exports ``segmentor`` to ``out`` (one file, metadata included).

    Args:
        segmentor: The segmentor (eval mode, weights loaded).
        out: The ``.onnx`` file to write.
        shape: ``(H, W)`` of the traced input; the input size of a static export.
        metadata: :func:`deploy_metadata`, stored as JSON under :data:`METADATA_KEY`.
        dynamic: Any image size (at least the backbone's stride); else ``shape`` only. The
            batch size is free either way.
        opset: ONNX opset (the exporter's default if ``None``).

    Returns:
        ``dict(seconds=export time)``.
    """
    for package in ('onnx', 'onnxscript'):
        import_optional(package)
    wrapper = ExportedSegmentor(segmentor)
    height, width = shape
    # batch 2, and for a dynamic export a width whose feature grid is not the positional
    # embedding's stored one, so that its resize is traced (it is skipped at the stored size)
    example = torch.randn(2, 3, height, width + 32 * dynamic)
    axes = {0: torch.export.Dim('batch', min=1, max=1024)}
    if dynamic:
        axes.update({2: torch.export.Dim('height', min=32, max=8192),
                     3: torch.export.Dim('width', min=32, max=8192)})
    start = time.perf_counter()
    with torch.no_grad():
        program = torch.onnx.export(
            wrapper, (example,), dynamo=True, external_data=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=(axes,),
            verbose=False)
    program.model.metadata_props[METADATA_KEY] = json.dumps(metadata)
    program.save(out, external_data=False)
    return dict(seconds=time.perf_counter() - start)


def default_shape(segmentor: nn.Module, cfg) -> tuple[int, int]:
    """The traced ``(H, W)`` when none is given: the slide crop, else the training crop."""
    size = segmentor.test_cfg.get('crop_size') or cfg.model.data_preprocessor.get('size')
    require(size is not None, 'the config gives no model.test_cfg.crop_size nor '
            'model.data_preprocessor.size to export at: pass --shape H W')
    return int(size[0]), int(size[1])


def export_checkpoint(config: str, checkpoint: str, out: str,
                      shape: Optional[Sequence[int]] = None, dynamic: bool = False,
                      opset: Optional[int] = None, cfg_options: Optional[dict] = None) -> dict:
    """Builds the config's model, loads ``checkpoint`` (only if it fits the model, through
    :func:`denseclip.apis.init_model`) and exports it with :func:`export_onnx`.

    Returns:
        ``dict(out, shape, dynamic_shape, seconds, size_mb, num_classes)``.

    Raises:
        FileNotFoundError: no such checkpoint.
        ExportError: a model without a decode head (zero-shot); pre-model prompting; a
            shape the backbone cannot take; a test pipeline or test-time padding the runtime
            cannot redo.
        CheckpointError: the checkpoint does not fit the config's model.
    """
    from denseclip.apis import init_model
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint!r} does not exist: give the file '
                                'that tools/train.py wrote (CHECKPOINT argument)')
    segmentor = init_model(config, checkpoint, device='cpu', cfg_options=cfg_options)
    return export_model(segmentor, segmentor.cfg, out, shape, dynamic, opset)


def export_model(segmentor: nn.Module, cfg, out: str, shape: Optional[Sequence[int]] = None,
                 dynamic: bool = False, opset: Optional[int] = None) -> dict:
    """Exports a built segmentor (weights as they are) of the prepared config ``cfg``.

    Returns:
        ``dict(out, shape, dynamic_shape, seconds, size_mb, num_classes)``.
    """
    check_exportable(segmentor)  # the refusals come before the slow part
    shape = tuple(shape) if shape else default_shape(segmentor, cfg)
    metadata = deploy_metadata(cfg, segmentor, shape, dynamic)
    try:  # one eager pass: a size the backbone cannot take fails here, with its own message
        with torch.no_grad():
            ExportedSegmentor(segmentor)(torch.zeros(1, 3, *shape))
    except ValueError as error:
        raise ExportError(f'--shape {shape[0]} {shape[1]}: {error}') from error
    result = export_onnx(segmentor, out, shape, metadata, dynamic, opset)
    return dict(out=out, shape=list(shape), dynamic_shape=dynamic,
                num_classes=len(metadata['class_names']), size_mb=os.path.getsize(out) / 2**20,
                **result)
