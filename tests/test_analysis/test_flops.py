"""FLOP counting (``denseclip.analysis.flops``; the command line is tested in
tests/test_tools/test_get_flops.py).

- the added handles against hand counts: attention (SDPA vs the explicit matmuls fvcore
  counts), transposed convolutions (correct vs ``--legacy-fvcore``);
- every paper config traces with no operator left without a rule (2 class names and a 64 px
  input keep this fast: the operators do not depend on either);
- the conventions: the text encoder is left out when cached, counted with pre-model prompting;
- one full-size check against the paper: RN50 DenseCLIP at 1024 x 1024 (~15 s).
"""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fvcore.nn import FlopCountAnalysis
from torch import nn

from denseclip.analysis.flops import PARTS, count_flops, op_handles
from denseclip.engine.config import build_segmentor, prepare_config

ROOT = Path(__file__).resolve().parents[2]
# configs/open_clip is left out: its models need the open_clip extra; their FLOPs are checked
# in tests/test_open_clip/test_open_clip_configs.py (run in .venv-open_clip)
CONFIGS = sorted(
    str(path.relative_to(ROOT)) for folder in ('denseclip', 'clip_fpn', 'ablations')
    for path in (ROOT / 'configs' / folder).glob('*.py'))
QUICKSTART = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
RN50 = ROOT / 'configs/denseclip/denseclip_r50_fpn_8xb4-80k_ade20k-512x512.py'


def _count(module: nn.Module, *inputs, **handle_options) -> float:
    analysis = FlopCountAnalysis(module, inputs).set_op_handle(**op_handles(**handle_options))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    total = analysis.total()
    assert not analysis.unsupported_ops()
    return total


class _Attention(nn.Module):
    def __init__(self, fused: bool):
        super().__init__()
        self.fused = fused

    def forward(self, q, k, v):
        if self.fused:
            return F.scaled_dot_product_attention(q, k, v)
        return ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(-1) @ v


def test_sdpa_counts_as_its_two_matmuls():
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 7, 8), torch.randn(2, 4, 7, 6)
    fused = _count(_Attention(True), q, k, v)
    assert fused == 2 * 4 * 5 * 7 * (8 + 6)
    assert fused == _count(_Attention(False), q, k, v)  # fvcore's own matmul handle


def test_causal_attention_counts_the_full_matmuls():
    class Causal(nn.Module):
        def forward(self, x):
            return F.scaled_dot_product_attention(x, x, x, is_causal=True)

    assert _count(Causal(), torch.randn(3, 2, 9, 4)) == 3 * 2 * 9 * 9 * (4 + 4)


def test_transposed_convolution_legacy_counts_output_positions():
    deconv = nn.ConvTranspose2d(6, 5, kernel_size=2, stride=2)
    x = torch.randn(1, 6, 8, 8)
    correct = _count(deconv, x)
    assert correct == 6 * 5 * 2 * 2 * 8 * 8  # every input position meets the whole kernel
    assert _count(deconv, x, legacy_fvcore=True) == 4 * correct  # 16 x 16 output positions
    conv = nn.Conv2d(6, 5, kernel_size=3, padding=1)
    assert _count(conv, x) == _count(conv, x, legacy_fvcore=True) == 6 * 5 * 9 * 8 * 8


def test_elementwise_ops_are_free_unless_asked():
    class Block(nn.Module):
        def forward(self, x):
            return torch.sigmoid(x) * x + F.gelu(x).mean()

    x = torch.randn(2, 3, 4)
    assert _count(Block(), x) == 0
    assert _count(Block(), x, count_elementwise=True) == 4 * 24 + 24  # sigmoid, mul, add, gelu


@pytest.mark.parametrize('config', CONFIGS)
def test_every_paper_config_has_a_rule_for_every_operator(config):
    is_denseclip = 'DenseCLIP' in prepare_config(ROOT / config, device='cpu').model.type
    cfg = prepare_config(ROOT / config, {'model.class_names': ['wall', 'sky']}
                         if is_denseclip else None, device='cpu')
    model = build_segmentor(cfg)
    report = count_flops(model, (64, 64), strict=True)  # raises on an operator without a rule
    assert report.gflops > 0
    assert set(PARTS) <= set(report.per_module_gflops)
    assert sum(report.per_module_gflops.values()) == pytest.approx(report.gflops_traced)


@pytest.mark.parametrize('prompting, excluded', [('post', True), ('none', True), ('pre', False)])
def test_text_encoder_counts_only_when_it_depends_on_the_image(prompting, excluded):
    cfg = prepare_config(QUICKSTART, {'model.prompting': prompting}, device='cpu')
    model = build_segmentor(cfg)
    report = count_flops(model, (64, 64))
    text = report.per_module_gflops['text_encoder']
    assert text > 0
    assert report.excluded == (('text_encoder', ) if excluded else ())
    assert report.gflops == pytest.approx(report.gflops_traced - (text if excluded else 0))
    text_params = sum(p.numel() for p in model.text_encoder.parameters()) / 1e6
    assert report.params_m == pytest.approx(report.params_m_total
                                            - (text_params if excluded else 0))
    assert report.params_m_trainable == pytest.approx(report.params_m_total - text_params)
    assert model.cache_text  # restored after the trace


def test_rn50_denseclip_matches_the_paper():
    """Table 1: 269.2 GFLOPs and 50.3 M parameters at 1024 x 1024 (within 1%)."""
    report = count_flops(build_segmentor(prepare_config(RN50, device='cpu')), (1024, 1024))
    assert report.gflops == pytest.approx(269.2, rel=0.01)
    assert report.params_m == pytest.approx(50.3, rel=0.01)
    assert report.per_module_gflops['text_encoder'] == pytest.approx(74, rel=0.01)  # excluded
