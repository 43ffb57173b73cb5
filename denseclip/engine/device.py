"""Whether this machine runs bfloat16 natively, read from the hardware and never assumed.

A CPU without AMX or ``avx512_bf16`` emulates bfloat16 matmuls and convolutions; there
autocasting to bfloat16 is several times *slower* than float32 (docs/benchmarks.md).
"""
import contextlib
import logging
import platform
import re

import torch
from mmengine.logging import print_log

CPUINFO = '/proc/cpuinfo'
#: CPU flags (as /proc/cpuinfo names them) that give bfloat16 matmuls native hardware support.
BF16_FLAGS = ('amx_bf16', 'avx512_bf16')


def cpu_model_and_flags() -> tuple[str, set[str]]:
    """The CPU's model name and its flags from ``/proc/cpuinfo`` (no flags where unreadable)."""
    model, flags = platform.processor() or 'unknown CPU', set()
    with contextlib.suppress(OSError):
        with open(CPUINFO) as file:
            info = file.read()
        found = re.search(r'^model name\s*:\s*(.+)$', info, re.MULTILINE)
        model = found.group(1).strip() if found else model
        found = re.search(r'^flags\s*:\s*(.+)$', info, re.MULTILINE)
        flags = set(found.group(1).split()) if found else set()
    return model, flags


def bf16_flags(device: torch.device | str) -> list[str]:
    """What gives ``device`` native bfloat16: ``['cuda']`` on a GPU that supports it, the CPU
    flags of :data:`BF16_FLAGS` it has, or ``[]`` (emulated)."""
    device = torch.device(device)
    if device.type == 'cuda':
        return ['cuda'] if torch.cuda.is_bf16_supported() else []
    _, flags = cpu_model_and_flags()
    return [flag for flag in BF16_FLAGS if flag in flags]


def warn_if_bf16_emulated(device: torch.device | str, what: str) -> bool:
    """Logs a warning when ``what`` (e.g. ``'--amp'``) autocasts to bfloat16 on a device that
    emulates it; returns whether it does."""
    if bf16_flags(device):
        return False
    model, _ = cpu_model_and_flags()
    print_log(f'{what}: this CPU ({model}) has none of {", ".join(BF16_FLAGS)}, so bfloat16 '
              'is emulated and usually several times slower than float32 (measure with '
              'tools/benchmark.py CONFIG --kernels); leave it out for speed',
              logger='current', level=logging.WARNING)
    return True


def check_device(device: torch.device | str, what: str = '--device') -> None:
    """Refuses a device this machine does not have, before a model is built on it.

    Args:
        device: ``'cpu'``, ``'cuda'``, ``'cuda:N'`` (or any name torch knows).
        what: How the user gave it, for the message.

    Raises:
        ValueError: the name is not a device, or there is no such CUDA device here.
    """
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{what} {device!r} is not a device name (expected 'cpu', 'cuda' or "
                         f"'cuda:N'): {err}") from None
    if device.type != 'cuda':
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ValueError(f'{what} {device}: this machine has no CUDA device (or this torch was '
                         f'built without CUDA: {torch.__version__}); use {what} cpu')
    if device.index is not None and device.index >= count:
        raise ValueError(f'{what} {device}: this machine has {count} CUDA device(s), '
                         f'cuda:0 to cuda:{count - 1}')
