"""open_clip is optional: DenseCLIP imports and builds its own models without it, and building
an open_clip tower without it says how to install it.

open_clip (and torchvision and timm, which it imports) are made unimportable here
(``sys.modules[name] = None``), so these checks mean the same in the main environment, which
has none of them, and in ``.venv-open_clip``, which has all three. (Where timm is installed,
mmseg's own ``TIMMBackbone`` imports it, and so torchvision, during ``import denseclip``; that
``import denseclip`` leaves open_clip unimported is checked in tests/test_open_clip/, where it
is installed.) The open_clip towers themselves are tested in tests/test_open_clip/.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from denseclip.clip import open_clip_weights
from denseclip.engine.config import build_segmentor, prepare_config
from denseclip.models import OpenCLIPTextContextEncoder, OpenCLIPVisionBackbone

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
OPEN_CLIP_CONFIG = (ROOT / 'configs/open_clip/'
                    'denseclip_openclip-vit-b-16-laion2b_fpn_8xb4-80k_ade20k-512x512.py')
#: open_clip and what it imports; none of them may be needed by ``import denseclip``.
OPTIONAL = ('open_clip', 'torchvision', 'timm')
INSTALL = r'pip install -e \.\[open_clip\]'


def python(code: str) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter (this process has long imported everything)."""
    env = {name: value for name, value in os.environ.items() if name != 'PYTHONWARNINGS'}
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env={**env, 'OMP_NUM_THREADS': '1'})
    assert result.returncode == 0, result.stderr
    return result


def test_denseclip_imports_and_builds_without_open_clip():
    """With open_clip, torchvision and timm unimportable, ``import denseclip`` (the open_clip
    modules included) works and a DenseCLIP of the project's own towers builds."""
    code = (
        'import json, sys\n'
        f'sys.modules.update(dict.fromkeys({OPTIONAL!r}))  # None: import raises ImportError\n'
        'import denseclip, denseclip.clip.open_clip_weights\n'
        'import denseclip.models.open_clip_text, denseclip.models.backbones.open_clip_visual\n'
        'from mmseg.registry import MODELS\n'
        'from denseclip.engine.config import build_segmentor, prepare_config\n'
        f'model = build_segmentor(prepare_config({str(QUICKSTART)!r}, device="cpu"))\n'
        'print(json.dumps([type(model).__name__, MODELS.get("OpenCLIPVisionBackbone").__name__,\n'
        '                  MODELS.get("OpenCLIPTextContextEncoder").__name__]))\n')
    built = json.loads(python(code).stdout.splitlines()[-1])
    assert built == ['DenseCLIP', 'OpenCLIPVisionBackbone', 'OpenCLIPTextContextEncoder']


@pytest.fixture
def no_open_clip(monkeypatch):
    """open_clip unimportable in this process for one test."""
    monkeypatch.setitem(sys.modules, 'open_clip', None)


@pytest.mark.parametrize('tower, key', [(OpenCLIPVisionBackbone, 'model.backbone'),
                                        (OpenCLIPTextContextEncoder, 'model.text_encoder')])
def test_open_clip_tower_without_open_clip_says_how_to_install(tower, key, no_open_clip):
    with pytest.raises(ImportError, match=rf'{key} \({tower.__name__}\) needs open_clip, which '
                                          f'could not be imported.*{INSTALL}'):
        tower('ViT-B-16')


def test_open_clip_config_without_open_clip_says_how_to_install(no_open_clip):
    cfg = prepare_config(OPEN_CLIP_CONFIG, device='cpu')
    with pytest.raises(ImportError, match=rf'model.backbone \(OpenCLIPVisionBackbone\) needs '
                                          f'open_clip.*{INSTALL}'):
        build_segmentor(cfg)


def test_open_clip_that_fails_to_import_names_torchvision(monkeypatch, tmp_path):
    """A torchvision built for another torch fails inside ``import open_clip`` with a
    RuntimeError about its operators; the error says what to install."""
    (tmp_path / 'open_clip.py').write_text(
        "raise RuntimeError('operator torchvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, 'open_clip', raising=False)
    with pytest.raises(ImportError, match=r'RuntimeError: operator torchvision::nms.*a torch '
                                          f'and a torchvision built for it.*{INSTALL}'):
        open_clip_weights.import_open_clip()
