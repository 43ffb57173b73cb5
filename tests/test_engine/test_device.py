"""Native bfloat16 is read from the CPU's flags (``denseclip.engine.device``), and ``--amp`` on
a CPU that emulates it says so."""
import logging

import pytest
from mmengine.logging import MMLogger

from denseclip.engine import device

CPUINFO = """processor\t: 0
model name\t: Test CPU 9000
flags\t\t: fpu sse2 avx2 avx512f {extra}

processor\t: 1
"""


@pytest.fixture
def cpuinfo(tmp_path, monkeypatch):
    """Points the module at a fake /proc/cpuinfo whose flags the test chooses."""
    def write(extra: str) -> None:
        path = tmp_path / 'cpuinfo'
        path.write_text(CPUINFO.format(extra=extra))
        monkeypatch.setattr(device, 'CPUINFO', str(path))
    return write


@pytest.fixture
def warnings_logged():
    """The WARNING records of mmengine's current logger while the test runs."""
    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.mark.parametrize('extra, native', [
    ('avx512_vnni', []), ('avx512_bf16', ['avx512_bf16']),
    ('amx_bf16 amx_tile avx512_bf16', ['amx_bf16', 'avx512_bf16'])])
def test_bf16_flags_come_from_cpuinfo(cpuinfo, extra, native):
    cpuinfo(extra)
    assert device.cpu_model_and_flags()[0] == 'Test CPU 9000'
    assert device.bf16_flags('cpu') == native


def test_emulated_bf16_is_a_warning_that_names_the_cpu(cpuinfo, warnings_logged):
    cpuinfo('avx512_vnni')
    assert device.warn_if_bf16_emulated('cpu', '--amp') is True
    message = warnings_logged[-1].getMessage()
    assert message.startswith('--amp: this CPU (Test CPU 9000) has none of amx_bf16, avx512_bf16')
    cpuinfo('avx512_bf16')
    count = len(warnings_logged)
    assert device.warn_if_bf16_emulated('cpu', '--amp') is False
    assert len(warnings_logged) == count


def test_unreadable_cpuinfo_means_no_native_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(device, 'CPUINFO', str(tmp_path / 'missing'))
    assert device.bf16_flags('cpu') == []


def test_this_machine_is_described_from_its_own_flags():
    """The real /proc/cpuinfo: whatever this CPU has, the answer agrees with its flags."""
    _, flags = device.cpu_model_and_flags()
    assert device.bf16_flags('cpu') == [flag for flag in device.BF16_FLAGS if flag in flags]
