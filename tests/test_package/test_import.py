"""``import denseclip``: cheap, silent, and still registering everything a config names.

Each check runs in a fresh interpreter, since this test process has long imported everything.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
#: Imported by ``denseclip.apis``'s inference helpers only, on first use, and by the tools.
HEAVY = ('mmseg.apis', 'matplotlib', 'denseclip.apis', 'denseclip.apis.inference',
         'denseclip.apis.inferencer', 'denseclip.apis.score_maps', 'denseclip.apis.visualization',
         'denseclip.analysis', 'denseclip.engine.config')


def python(code: str) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter with the default warnings filters, as a user's."""
    env = {name: value for name, value in os.environ.items() if name != 'PYTHONWARNINGS'}
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env={**env, 'OMP_NUM_THREADS': '1'})
    assert result.returncode == 0, result.stderr
    return result


def test_import_loads_no_inference_helpers():
    loaded = json.loads(python(
        'import sys, json, denseclip\n'
        f'print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))'
    ).stdout.splitlines()[-1])
    assert loaded == []


def test_import_prints_nothing():
    """mmseg prints 'Could not import OneDL' and mmcv warns about its missing ops when first
    imported; ``import denseclip`` imports them without either line, and adds none."""
    result = python('import denseclip')
    assert result.stdout == ''
    assert result.stderr == ''


def test_import_keeps_other_printed_lines():
    """Only the known lines are dropped: what else is printed during the import comes out."""
    result = python(
        'from denseclip.engine.console import quiet_imports\n'
        'with quiet_imports():\n'
        '    print("Could not import OneDL")\n'
        '    print("a line of our own")\n'
        '    print("Could not import OneDL, really")\n'
        'print("after")\n')
    assert result.stdout == 'a line of our own\nCould not import OneDL, really\nafter\n'


def test_registries_hold_what_configs_name_without_the_inference_helpers():
    code = (
        'import sys, json, denseclip\n'
        'from mmseg.registry import HOOKS, MODELS, OPTIM_WRAPPERS, VISUALIZERS\n'
        'from denseclip.engine.visualizer import SegVisualizer\n'
        'found = dict(\n'
        '    visualizer=VISUALIZERS.get("SegVisualizer") is SegVisualizer,\n'
        '    models=[name for name in ("DenseCLIP", "CLIPResNet", "CLIPVisionTransformer",\n'
        '            "CLIPTextContextEncoder", "ContextDecoder", "IdentityHead")\n'
        '            if MODELS.get(name) is None],\n'
        '    hooks=[name for name in ("AtomicCheckpointHook", "NaNGuardHook",\n'
        '           "IterationSeedHook", "ChannelsLastHook") if HOOKS.get(name) is None],\n'
        '    optim_wrappers=OPTIM_WRAPPERS.get("BFloat16OptimWrapper") is not None,\n'
        f'    loaded=[name for name in {HEAVY!r} if name in sys.modules])\n'
        'print(json.dumps(found))\n')
    found = json.loads(python(code).stdout.splitlines()[-1])
    assert found == dict(visualizer=True, models=[], hooks=[], optim_wrappers=True, loaded=[])


def test_config_with_custom_imports_builds_the_model_and_the_visualiser():
    """A config that only says ``custom_imports=['denseclip']`` (the default runtime does)."""
    code = (
        'import sys\n'
        'from mmengine.config import Config\n'
        'from mmengine.registry import init_default_scope\n'
        f'cfg = Config.fromfile({str(CONFIG)!r})\n'
        'assert cfg.custom_imports.imports == ["denseclip"]\n'
        'assert "denseclip" in sys.modules  # imported by Config.fromfile\n'
        'init_default_scope(cfg.default_scope)\n'
        'from mmseg.registry import MODELS, VISUALIZERS\n'
        'cfg.model.class_names = cfg.train_dataloader.dataset.metainfo["classes"]\n'
        'model = MODELS.build(cfg.model)\n'
        'visualizer = VISUALIZERS.build(cfg.visualizer)\n'
        'print(type(model).__module__, type(model).__name__)\n'
        'print(type(visualizer).__module__, type(visualizer).__name__)\n')
    lines = python(code).stdout.splitlines()
    assert lines[-2:] == ['denseclip.models.segmentor DenseCLIP',
                          'denseclip.engine.visualizer SegVisualizer']


def test_apis_names_resolve_on_first_use():
    code = (
        'import json, sys\n'
        'import denseclip.apis as apis\n'
        'before = "mmseg.apis" in sys.modules\n'
        'names = {name: getattr(apis, name).__module__ for name in apis.__all__}\n'
        'from denseclip.apis import DenseCLIPInferencer, init_model\n'
        'from denseclip.apis.inferencer import DenseCLIPInferencer as direct\n'
        'try:\n'
        '    apis.no_such_name\n'
        '    missing = "no error"\n'
        'except AttributeError as error:\n'
        '    missing = str(error)\n'
        'print(json.dumps(dict(before=before, names=names, same=DenseCLIPInferencer is direct,\n'
        '                      listed=sorted(set(apis.__all__) - set(dir(apis))),\n'
        '                      missing=missing)))\n')
    found = json.loads(python(code).stdout.splitlines()[-1])
    assert found['before'] is False
    assert found['names'] == {
        'SegVisualizer': 'denseclip.engine.visualizer',
        'DenseCLIPInferencer': 'denseclip.apis.inferencer',
        'ScoreMapResult': 'denseclip.apis.score_maps',
        'demo_picture': 'denseclip.apis.visualization',
        'inference_model': 'denseclip.apis.inference',
        'init_model': 'denseclip.apis.inference',
        'predict_with_score_maps': 'denseclip.apis.score_maps',
        'render_picture': 'denseclip.apis.visualization',
        'save_picture': 'denseclip.apis.visualization',
    }
    assert found['same'] is True
    assert found['listed'] == []
    assert found['missing'] == "module 'denseclip.apis' has no attribute 'no_such_name'"
