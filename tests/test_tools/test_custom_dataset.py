"""docs/custom_dataset.md, run as written: its config files, its commands and its snippet.

The blocks are read from the Markdown, so the page and this test cannot drift apart: python
blocks whose first line names a file (``# my_configs/NAME.py``) are saved there, the other
python block is run, and the bash commands are run in a folder laid out like a clone
(``configs`` and ``tools`` linked) that holds a dataset generated with the page's class list
(7 classes, 48x64 images) in the page's layout. Two things differ from a user's run so that
it takes seconds on a CPU: training and testing use ``tiny_NAME.py``, the page's config with
the quickstart's tiny random model instead of CLIP's ResNet-50 (data, pipelines and schedule
are the page's), and training stops after 2 iterations.
"""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmseg.datasets import CityscapesDataset
from mmseg.utils import register_all_modules

from denseclip.datasets import scan_loaders
from denseclip.engine.config import fill_class_names

pytestmark = pytest.mark.slow  # tools as subprocesses: tens of seconds

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / 'docs/custom_dataset.md'
FENCE = re.compile(r'^```(\w+)\n(.*?)^```$', re.S | re.M)
FILE_HEADER = re.compile(r'# (my_configs/\S+\.py)\n')
IMAGE_SIZE = (48, 64)  # height, width
NUM_IMAGES = {'train': 4, 'val': 2}
TRAIN_ITERS = 2
TINY_C5 = 16 * 32  # the tiny backbone's last level: width x 32
TINY = """# {name} with the quickstart's tiny random model (configs/quickstart/): a CPU test
_base_ = ['./{name}']
model = dict(
    pretrained=None,
    backbone=dict(layers=(1, 1, 1, 1), width=16, output_dim=64),  # the other widths follow
    text_encoder=dict(context_length=9, transformer_width=64, transformer_heads=2,
                      transformer_layers=2),
    context_decoder=dict(transformer_width=32, transformer_heads=2, transformer_layers=1),
    pre_prompter=dict(transformer_width=32, transformer_heads=2, transformer_layers=1),
    neck=dict(in_channels=[64, 128, 256, {c5}], out_channels=32),
    decode_head=dict(in_channels=[32] * 4, channels=32, norm_cfg=dict(type='BN')))
loader = dict(num_workers=0, persistent_workers=False)
train_dataloader = dict(loader)
val_dataloader = dict(loader)
test_dataloader = dict(loader)
"""


# ----------------------------------------------------------------- the page
def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(DOC.read_text()) if lang == language]


def config_files() -> dict[str, str]:
    """``{path: text}`` of the python blocks that are config files."""
    return {match.group(1): body for body in blocks('python')
            if (match := FILE_HEADER.match(body))}


def commands() -> list[list[str]]:
    return [shlex.split(line) for body in blocks('bash') for line in body.splitlines()
            if line.strip() and not line.startswith('#')]


def command(program: str) -> list[str]:
    """The one command of the page that runs ``program`` (``'tools/train.py'``, ...; ``'-c'``:
    the one-line Python program)."""
    found = [cmd for cmd in commands() if program in cmd[:2]]
    assert len(found) == 1, f'{DOC.name} should run {program} once, runs it {len(found)} times'
    return found[0]


MAIN_CONFIG = 'my_configs/denseclip_r50_fpn_8xb4-80k_mydataset-512x512.py'
CITYSCAPES_CONFIG = 'my_configs/denseclip_r50_fpn_8xb4-80k_cityscapes-512x512.py'


# ----------------------------------------------------------------- a clone with the data
def write_pair(image_path: Path, label_path: Path, classes: list[int]) -> None:
    """An image and its label map: a background class, two rectangles of other classes and
    an unlabelled (255) top row; each class has its own colour."""
    height, width = IMAGE_SIZE
    labels = np.full(IMAGE_SIZE, classes[0], np.uint8)
    labels[8:30, 4:30] = classes[1]
    labels[20:44, 34:60] = classes[2]
    labels[0] = 255
    colours = np.random.default_rng(0).integers(0, 256, (256, 3), np.uint8)
    noise = np.random.default_rng(classes).integers(0, 30, (height, width, 3))
    image_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(image_path), (colours[labels] * 0.85 + noise).astype(np.uint8))
    cv2.imwrite(str(label_path), labels)


def classes_of(config: Path) -> tuple[str, ...]:
    return tuple(Config.fromfile(str(config)).train_dataloader.dataset.metainfo.classes)


def write_dataset(data_root: Path, cfg: Config) -> None:
    """Images and label maps where ``cfg``'s dataloaders look for them, every class shown."""
    num_classes = len(cfg.train_dataloader.dataset.metainfo.classes)
    for split, loader in (('train', cfg.train_dataloader), ('val', cfg.val_dataloader)):
        dataset = loader.dataset
        for index in range(NUM_IMAGES[split]):
            name = f'{split}_{index:04d}'
            write_pair(data_root / dataset.data_prefix.img_path / f'{name}{dataset.img_suffix}',
                       data_root / dataset.data_prefix.seg_map_path /
                       f'{name}{dataset.seg_map_suffix}',
                       [(index + offset) % num_classes for offset in (0, 2, 4)])


@pytest.fixture(scope='module')
def clone(tmp_path_factory) -> Path:
    """A folder laid out like a clone: ``configs`` and ``tools`` linked, the page's config
    files in ``my_configs``, their tiny-model variants, and the dataset under ``data``."""
    root = tmp_path_factory.mktemp('clone')
    for name in ('configs', 'tools'):
        (root / name).symlink_to(ROOT / name)
    for path, text in config_files().items():
        (root / path).parent.mkdir(exist_ok=True)
        (root / path).write_text(text)
        tiny = root / Path(path).with_name(f'tiny_{Path(path).name}')
        tiny.write_text(TINY.format(name=Path(path).name, c5=TINY_C5))
    cfg = Config.fromfile(str(root / MAIN_CONFIG))
    data_root = root / cfg.train_dataloader.dataset.data_root
    write_dataset(data_root, cfg)
    (data_root / 'classes.txt').write_text('\n'.join(classes_of(root / MAIN_CONFIG)) + '\n')
    return root


def run(cmd: list[str], cwd: Path) -> str:
    """Runs a command of the page as a user would (``python`` is this interpreter); returns
    what it printed on stdout (the summaries, mmengine's log)."""
    cmd = [sys.executable if arg == 'python' else arg for arg in cmd]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout


def tiny(cmd: list[str]) -> list[str]:
    """The command with the page's config swapped for its tiny-model variant."""
    return [arg.replace('my_configs/', 'my_configs/tiny_') if arg.endswith('.py') and
            arg.startswith('my_configs/') else arg for arg in cmd]


# ----------------------------------------------------------------- the steps
def test_page_has_the_documented_files_and_commands():
    assert set(config_files()) == {MAIN_CONFIG, CITYSCAPES_CONFIG}
    for program in ('tools/check_dataset.py', 'tools/train.py', 'tools/test.py',
                    'tools/dist_train.sh'):
        assert command(program)[command(program).index(program) + 1] == MAIN_CONFIG
        assert (ROOT / program).is_file()


def test_class_list_becomes_the_config_tuple(clone):
    classes = classes_of(clone / MAIN_CONFIG)
    assert len(classes) not in (8, 150)  # neither the quickstart's nor ADE20K's
    assert run(command('-c'), cwd=clone).strip() == repr(classes)


def test_derived_channels_follow_the_class_list(clone, monkeypatch, capsys):
    """The page's snippet, run in this process on the page's (full-size) config."""
    snippet = next(body for body in blocks('python') if not FILE_HEADER.match(body))
    classes = classes_of(clone / MAIN_CONFIG)
    num_classes = len(classes)
    assert f'# {num_classes}\n' in snippet and f'2048 + {num_classes}' in snippet
    monkeypatch.chdir(clone)
    exec(compile(snippet, str(DOC), 'exec'), {})  # noqa: S102  (the page's own code)
    names, num_outputs, neck_inputs = capsys.readouterr().out.splitlines()[-3:]
    assert names == repr(classes)
    assert int(num_outputs) == num_classes and int(neck_inputs) == 2048 + num_classes


def test_check_dataset_summarises_the_clean_dataset(clone):
    output = run(command('tools/check_dataset.py'), cwd=clone)
    classes = classes_of(clone / MAIN_CONFIG)
    train = output[:output.index('\nval_dataloader.dataset: ')]
    assert train.startswith(f'train_dataloader.dataset: {NUM_IMAGES["train"]} samples in '
                            f"'data/my_dataset/images/train', {len(classes)} classes\n")
    for value, name in enumerate(classes):  # value, class, pixels, share, label maps
        assert re.search(rf'^\s+{value}\s+{name}\s+[\d,]+\s+[\d.]+%\s+\d+$', train, re.M)
    assert 'in no label map' not in train and 'problems: none' in train
    assert output.strip().endswith(
        f'Checked 2 datasets, {sum(NUM_IMAGES.values())} samples: no problems found.')


def test_train_and_test_with_the_documented_commands(clone):
    classes = classes_of(clone / MAIN_CONFIG)
    train = tiny(command('tools/train.py'))
    work_dir = clone / train[train.index('--work-dir') + 1]
    train[train.index('--max-iters') + 1] = str(TRAIN_ITERS)
    output = run(train, cwd=clone)
    for change in ('param_scheduler[0].end: 80000 -> 2',
                   'param_scheduler[0].warmup_iters: 1500 -> 0',
                   'train_cfg.max_iters: 80000 -> 2', 'train_cfg.val_interval: 8000 -> 1'):
        assert f'--max-iters {TRAIN_ITERS}: {change}' in output

    dumped = Config.fromfile(str(work_dir / f'tiny_{Path(MAIN_CONFIG).name}'))
    assert dumped.model.class_names == list(classes)
    state = torch.load(work_dir / f'iter_{TRAIN_ITERS}.pth', map_location='cpu',
                       weights_only=False)['state_dict']
    assert state['decode_head.conv_seg.weight'].shape[0] == len(classes)
    assert state['neck.lateral_convs.3.conv.weight'].shape[1] == TINY_C5 + len(classes)

    test = tiny(command('tools/test.py'))
    test[-1] = str(work_dir / f'iter_{TRAIN_ITERS}.pth')
    output = run(test, cwd=clone)
    assert re.search(r'Iter\(test\) \[\d+/\d+\].*mIoU: [\d.]+', output)
    for name in classes:  # mmseg's per-class table
        assert re.search(rf'^\|\s+{name}\s+\|', output, re.M), name


def test_cityscapes_config_takes_the_classes_of_its_dataset_type(clone, monkeypatch):
    """A Cityscapes-like folder: one sub-folder per city, suffixed names, mmseg's classes."""
    register_all_modules(init_default_scope=True)
    cfg = fill_class_names(Config.fromfile(str(clone / CITYSCAPES_CONFIG)))
    classes = CityscapesDataset.METAINFO['classes']
    assert cfg.model.class_names == list(classes) and len(classes) == 19
    data_root = clone / cfg.train_dataloader.dataset.data_root
    for split, loader in (('train', cfg.train_dataloader), ('val', cfg.val_dataloader)):
        dataset = loader.dataset
        for index in range(2):
            name = f'aachen/aachen_{index:06d}_000019'
            write_pair(data_root / dataset.data_prefix.img_path / f'{name}{dataset.img_suffix}',
                       data_root / dataset.data_prefix.seg_map_path /
                       f'{name}{dataset.seg_map_suffix}', [index, 10 + index, 18])
    monkeypatch.chdir(clone)
    reports = scan_loaders(cfg)
    assert [report.problems for report in reports] == [[], [], []]
    assert [report.samples for report in reports] == [2, 2, 0]
    assert reports[0].classes == classes and reports[0].pixels[18] > 0
