"""FLOPs and parameters of a segmentor, counted the way the DenseCLIP paper did (fvcore).

fvcore's :class:`~fvcore.nn.FlopCountAnalysis` traces the model's tensor forward -- mmseg's
``encode_decode`` (backbone, text branch, neck, decode head and the bilinear resize of the
logits to the input size; the paper's ``forward_dummy``) -- and counts one fused multiply-add
as one FLOP. On top of fvcore's own handles this module adds:

- ``aten::scaled_dot_product_attention``: fvcore has no handle and, under torch 2, would drop
  every attention matmul silently; it is counted as the two batched matmuls it replaces,
  ``Q @ K^T`` and ``A @ V`` (a causal mask saves no FLOPs in those matmuls).
- ``aten::_convolution`` with a choice for transposed convolutions: counted over the *input*
  positions (correct, current fvcore) or, with ``legacy_fvcore=True``, over the *output*
  positions as the fvcore that produced the paper's ViT-B numbers did (4x for stride 2).
- Every other operator the models here use gets an explicit rule, so nothing is left
  "unsupported": element-wise ops, activations, poolings, reductions and softmax cost nothing
  under fvcore's convention (as in the paper), or one FLOP per output element (per input
  element for reductions and poolings) with ``count_elementwise=True``; data movement and
  indexing cost nothing. An operator without a rule makes :func:`count_flops` raise.

Conventions of the paper's Table 1 that :func:`count_flops` reproduces: the input is one
1024 x 1024 image; when the text branch does not depend on the image (post-model prompting, or
none) the text encoder is run once and cached, so its FLOPs (~74 G for ADE20K's 150 classes)
and its parameters are left out of ``gflops`` and ``params_m``; with pre-model prompting it
runs for every image and counts.
"""
import dataclasses
from math import prod
from typing import Any, Callable, Optional

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape
from torch import nn

Handle = Callable[[list, list], Any]

#: Top-level parts of a segmentor reported separately; FLOPs of anything else (the score
#: map, the final resize ...) are reported as ``others``.
PARTS = ('backbone', 'text_encoder', 'context_decoder', 'neck', 'decode_head')

#: Element-wise operators, activations and softmax: free under fvcore's convention, one FLOP
#: per output element with ``count_elementwise``.
ELEMENTWISE_OPS = (
    'aten::add', 'aten::add_', 'aten::sub', 'aten::sub_', 'aten::rsub', 'aten::mul',
    'aten::mul_', 'aten::div', 'aten::div_', 'aten::neg', 'aten::abs', 'aten::pow',
    'aten::sqrt', 'aten::rsqrt', 'aten::exp', 'aten::log', 'aten::reciprocal',
    'aten::sigmoid', 'aten::sigmoid_', 'aten::tanh', 'aten::relu', 'aten::relu_',
    'aten::gelu', 'aten::gelu_', 'aten::silu', 'aten::silu_', 'aten::hardswish',
    'aten::hardsigmoid', 'aten::leaky_relu', 'aten::leaky_relu_', 'aten::elu',
    'aten::clamp', 'aten::clamp_', 'aten::clamp_min', 'aten::clamp_min_', 'aten::clamp_max',
    'aten::softmax', 'aten::log_softmax', 'aten::where', 'aten::lerp',
)
#: Reductions and poolings: free, or one FLOP per *input* element with ``count_elementwise``.
REDUCTION_OPS = (
    'aten::mean', 'aten::sum', 'aten::norm', 'aten::linalg_vector_norm', 'aten::max_pool2d',
    'aten::max_pool2d_with_indices', 'aten::avg_pool2d', 'aten::adaptive_max_pool2d',
    'aten::amax', 'aten::logsumexp',
)
#: Data movement, indexing, dropout (identity at inference) and comparisons: always free.
ZERO_FLOP_OPS = (
    'aten::unflatten', 'aten::expand_as', 'aten::repeat', 'aten::embedding', 'aten::argmax',
    'aten::argmin', 'aten::feature_dropout', 'aten::dropout_', 'aten::alpha_dropout',
    'aten::clone', 'aten::pad', 'aten::reflection_pad2d', 'aten::replicate_pad2d',
    'aten::flip', 'aten::index_select', 'aten::masked_fill_', 'aten::new_ones',
    'aten::ones_like', 'aten::empty_like', 'aten::scalar_tensor', 'aten::lt', 'aten::le',
    'aten::ne', 'aten::logical_not', 'aten::triu', 'aten::tril', 'aten::fill_', 'aten::zero_',
    'aten::linspace', 'aten::meshgrid', 'aten::view_as', 'aten::reshape_as', 'aten::movedim',
    'aten::swapaxes', 'aten::tile', 'aten::channel_shuffle', 'aten::pixel_shuffle',
    'aten::im2col', 'aten::col2im', 'aten::upsample_nearest1d', 'aten::bernoulli_',
)

CONVENTIONS = (
    'fvcore FlopCountAnalysis on encode_decode (tensor forward incl. the final resize of the '
    'logits to the input); 1 FLOP = 1 fused multiply-add; batch 1',
    'scaled_dot_product_attention counted as its two batched matmuls (QK^T and AV)',
    'element-wise ops, activations, poolings and softmax count 0 (fvcore default)',
    'text encoder excluded from gflops and params_m when its input does not depend on the '
    'image (post-model / no prompting: run once and cached); included with pre-model prompting',
)


def sdpa_flop_jit(inputs: list, outputs: list) -> int:
    """``scaled_dot_product_attention(q [..., L, E], k [..., S, E], v [..., S, Ev])`` as the
    two matmuls it replaces: ``L*S*E`` for ``Q @ K^T`` plus ``L*S*Ev`` for ``A @ V``."""
    q_shape, k_shape, v_shape = (get_shape(value) for value in inputs[:3])
    *batch, length, embed = q_shape
    source = k_shape[-2]
    return prod(batch) * length * source * (embed + v_shape[-1])


def conv_flop_handle(legacy_fvcore: bool = False) -> Handle:
    """Handle of ``aten::_convolution``: batch x prod(weight) x spatial positions.

    A transposed convolution visits every *input* position once (fvcore >= 2022). The fvcore of
    the paper's ViT-B numbers multiplied by the *output* positions instead; ``legacy_fvcore``
    reproduces that.
    """
    def conv_flop_jit(inputs: list, outputs: list) -> int:
        x_shape, w_shape = get_shape(inputs[0]), get_shape(inputs[1])
        out_shape = get_shape(outputs[0])
        transposed = bool(inputs[6].toIValue())
        positions = x_shape[2:] if transposed and not legacy_fvcore else out_shape[2:]
        return x_shape[0] * prod(w_shape) * prod(positions)
    return conv_flop_jit


def numel_handle(which: str) -> Handle:
    """One FLOP per element of the first ``'input'`` or of the first ``'output'``."""
    def numel_flop_jit(inputs: list, outputs: list) -> int:
        shape = get_shape((inputs if which == 'input' else outputs)[0])
        return prod(shape) if shape is not None else 0
    return numel_flop_jit


def op_handles(legacy_fvcore: bool = False,
               count_elementwise: bool = False) -> dict[str, Optional[Handle]]:
    """Handles added to fvcore's defaults; ``None`` marks an operator as free."""
    handles: dict[str, Optional[Handle]] = {
        'aten::scaled_dot_product_attention': sdpa_flop_jit,
        'aten::_convolution': conv_flop_handle(legacy_fvcore),
    }
    per_output = numel_handle('output') if count_elementwise else None
    per_input = numel_handle('input') if count_elementwise else None
    handles.update({op: per_output for op in ELEMENTWISE_OPS})
    handles.update({op: per_input for op in REDUCTION_OPS})
    handles.update({op: None for op in ZERO_FLOP_OPS})
    return handles


@dataclasses.dataclass
class FlopReport:
    """FLOPs and parameters of one segmentor at one input size (see the module docstring)."""

    input_shape: tuple[int, int, int]
    gflops: float
    gflops_traced: float
    per_module_gflops: dict[str, float]
    excluded: tuple[str, ...]
    params_m: float
    params_m_total: float
    params_m_trainable: float
    per_module_params_m: dict[str, float]
    by_operator_gflops: dict[str, float]
    legacy_fvcore: bool = False
    count_elementwise: bool = False
    conventions: tuple[str, ...] = CONVENTIONS

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for key in ('input_shape', 'excluded', 'conventions'):
            out[key] = list(out[key])
        return out


class _EncodeDecode(nn.Module):
    """The traced function: ``segmentor.encode_decode(inputs)`` for one input size."""

    def __init__(self, segmentor: nn.Module, size: tuple[int, int]):
        super().__init__()
        self.segmentor = segmentor
        self.img_metas = [dict(img_shape=torch.Size(size), ori_shape=tuple(size))]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.segmentor.encode_decode(inputs, self.img_metas)


def text_branch_is_cached(model: nn.Module) -> bool:
    """Whether the model has a text encoder whose input does not depend on the image."""
    return (getattr(model, 'text_encoder', None) is not None
            and getattr(model, 'pre_prompter', None) is None)


def _params_m(module: Optional[nn.Module], trainable_only: bool = False) -> float:
    if module is None:
        return 0.0
    return sum(p.numel() for p in module.parameters()
               if p.requires_grad or not trainable_only) / 1e6


def count_params(model: nn.Module) -> dict[str, Any]:
    """Parameters in millions: the paper's convention (``params_m``), total, trainable and per
    top-level part."""
    per_module = {name: _params_m(getattr(model, name, None)) for name in PARTS}
    for name, child in model.named_children():  # e.g. a pre-model prompter, auxiliary heads
        if name not in per_module and _params_m(child):
            per_module[name] = _params_m(child)
    total = _params_m(model)
    per_module['others'] = total - sum(per_module.values())  # contexts, gamma
    excluded = per_module['text_encoder'] if text_branch_is_cached(model) else 0.0
    return dict(params_m=total - excluded, params_m_total=total,
                params_m_trainable=_params_m(model, trainable_only=True),
                per_module_params_m=per_module)


def flop_analysis(model: nn.Module, size: tuple[int, int], legacy_fvcore: bool = False,
                  count_elementwise: bool = False) -> FlopCountAnalysis:
    """An fvcore analysis of ``model.encode_decode`` on a ``[1, 3, *size]`` input.

    Module names in it are prefixed with ``segmentor.``.
    """
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    inputs = torch.randn(1, 3, *size, dtype=dtype, device=device)
    analysis = FlopCountAnalysis(_EncodeDecode(model, size), (inputs,))
    analysis.set_op_handle(**op_handles(legacy_fvcore, count_elementwise))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analysis


def count_flops(model: nn.Module, size: tuple[int, int] = (1024, 1024),
                legacy_fvcore: bool = False, count_elementwise: bool = False,
                strict: bool = True) -> FlopReport:
    """Counts FLOPs (one image of ``size``) and parameters of an mmseg ``EncoderDecoder``.

    The model is traced in eval mode without gradients and with its text cache disabled, so
    that the text encoder is traced and reported (then left out of ``gflops`` if cached), and
    with ``nn.MultiheadAttention``'s fused fast path off (all three restored afterwards).

    Args:
        model: The segmentor (any ``EncoderDecoder``; DenseCLIP or a baseline).
        size: Input ``(H, W)``.
        legacy_fvcore: Count transposed convolutions over their output positions, as the
            fvcore behind the paper's ViT-B numbers did.
        count_elementwise: Count element-wise ops, activations, poolings and softmax too.
        strict: Raise if the trace holds an operator that no handle counts or declares free.
    """
    was_training, cache_text = model.training, getattr(model, 'cache_text', None)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    model.eval()
    if cache_text is not None:
        model.cache_text = False
    # nn.MultiheadAttention (open_clip's towers) would run its fused inference kernel,
    # aten::_native_multi_head_attention, which has no FLOP rule; off, it runs the in-projection,
    # scaled_dot_product_attention and out-projection that the handles here count
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            analysis = flop_analysis(model, size, legacy_fvcore, count_elementwise)
            traced = analysis.total()
            by_module = analysis.by_module()
            unsupported = analysis.unsupported_ops()
            by_operator = analysis.by_operator()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        model.train(was_training)
        if cache_text is not None:
            model.cache_text = cache_text
    if strict and unsupported:
        raise RuntimeError(
            f'operators without a FLOP rule: {dict(unsupported)}; add a handle (or declare '
            'them free) in denseclip/analysis/flops.py')
    per_module = {name: by_module.get(f'segmentor.{name}', 0) / 1e9 for name in PARTS}
    for name, child in model.named_children():  # e.g. a pre-model prompter
        flops = by_module.get(f'segmentor.{name}', 0)
        if name not in per_module and flops:
            per_module[name] = flops / 1e9
    per_module['others'] = traced / 1e9 - sum(per_module.values())
    excluded = ('text_encoder', ) if text_branch_is_cached(model) else ()
    gflops = traced / 1e9 - sum(per_module[name] for name in excluded)
    return FlopReport(
        input_shape=(3, *size), gflops=gflops, gflops_traced=traced / 1e9,
        per_module_gflops=per_module, excluded=excluded,
        by_operator_gflops={op: flops / 1e9 for op, flops in sorted(by_operator.items())},
        legacy_fvcore=legacy_fvcore, count_elementwise=count_elementwise,
        **count_params(model))

