"""The fault matrix of docs/robustness.md: every entry point × every kind of outside input,
each cell a bad input given through the tool's command line as a user would type it.

Every cell asserts the same contract: exit status ≠ 0; one message in the project's words that
names the file, option or config key (no Python traceback, and no note that a library raised
it, which :func:`denseclip.engine.cli.run_tool` adds to errors from outside the project's
code); and nothing lost (outputs that existed are unchanged). Cells covered elsewhere, and the
cells that do not apply, are listed in docs/robustness.md.
"""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # tools as subprocesses: tens of seconds

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
#: Two short iterations, a checkpoint at the second.
SHORT = ['train_cfg.max_iters=2', 'train_cfg.val_interval=2',
         'default_hooks.checkpoint.interval=2', 'param_scheduler.0.end=1',
         'param_scheduler.1.begin=1', 'param_scheduler.1.end=2']


def assert_clear_failure(proc, *named: str) -> None:
    """Exit ≠ 0, no traceback, raised in the project's code, every string of ``named`` said."""
    assert proc.returncode != 0, proc.output[-3000:]
    assert 'Traceback (most recent call last)' not in proc.output, proc.output[-3000:]
    assert 'rerun with --debug' not in proc.output, proc.output[-3000:]
    for text in named:
        assert text in proc.output, (text, proc.output[-3000:])


@pytest.fixture(scope='module')
def nan_checkpoint(quickstart_checkpoint, tmp_path_factory) -> Path:
    """The quickstart checkpoint with one NaN in the first conv and an Inf in the head."""
    checkpoint = torch.load(quickstart_checkpoint, weights_only=False)
    checkpoint['state_dict']['backbone.conv1.weight'][0, 0, 0, 0] = float('nan')
    checkpoint['state_dict']['decode_head.conv_seg.weight'].fill_(float('inf'))
    path = tmp_path_factory.mktemp('nan') / 'diverged.pth'
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope='module')
def image(tmp_path_factory, synthetic_root) -> Path:
    """One validation image of the synthetic data."""
    return next((synthetic_root / 'images' / 'validation').glob('*.jpg'))


@pytest.fixture
def not_a_folder(tmp_path) -> Path:
    """A path below a regular file: no folder can be made there (also as root)."""
    blocker = tmp_path / 'blocker'
    blocker.write_text('a file where a folder was expected')
    return blocker / 'out'


# ----------------------------------------------------------------------------- train
def test_train_misspelled_argument(run_tool, data_options, tmp_path):
    proc = run_tool('train.py', QUICKSTART, '--work-dir', tmp_path / 'w', *data_options,
                    'model.backbone.layres=[1,1,1,1]', cwd=tmp_path)
    assert_clear_failure(proc, 'model.backbone.layres', "did you mean 'layers'")
    assert not (tmp_path / 'w').exists()  # stopped before the runner wrote anything


def test_train_option_that_nothing_reads(run_tool, data_options, tmp_path):
    proc = run_tool('train.py', QUICKSTART, '--work-dir', tmp_path, *data_options,
                    'trian_cfg.max_iters=2', cwd=tmp_path)
    assert_clear_failure(proc, '--cfg-options trian_cfg.max_iters', "did you mean 'train_cfg'")


def test_train_batch_size_zero(run_tool, data_options, tmp_path):
    proc = run_tool('train.py', QUICKSTART, '--work-dir', tmp_path, *data_options,
                    'train_dataloader.batch_size=0', cwd=tmp_path)
    assert_clear_failure(proc, 'train_dataloader.batch_size=0', 'an integer >= 1')


def test_train_from_a_nan_checkpoint(run_tool, data_options, nan_checkpoint, tmp_path):
    proc = run_tool('train.py', QUICKSTART, '--work-dir', tmp_path, *data_options,
                    f'load_from={nan_checkpoint}', cwd=tmp_path)
    size = torch.load(nan_checkpoint)['state_dict']['backbone.conv1.weight'].numel()
    assert_clear_failure(proc, str(nan_checkpoint), 'NaN or Inf in 2 tensors',
                         f'state_dict.backbone.conv1.weight (1 of {size} values)')


def test_train_with_a_repeated_class_name(run_tool, data_options, tmp_path):
    names = "['wall','floor','Wall','ceiling','bed','tree','road','grass']"
    proc = run_tool('train.py', QUICKSTART, '--work-dir', tmp_path, *data_options,
                    f'train_dataloader.dataset.metainfo.classes={names}', cwd=tmp_path)
    assert_clear_failure(proc, 'train_dataloader.dataset.metainfo.classes',
                         "'wall' at position 0, position 2")


def test_train_in_a_work_dir_another_run_holds(run_tool, data_options, tmp_path):
    work_dir = tmp_path / 'busy'
    holder = subprocess.Popen(
        [sys.executable, '-c', 'import sys, time\nfrom denseclip.engine import lock_work_dir\n'
         'lock_work_dir(sys.argv[1]); print("locked", flush=True); time.sleep(120)',
         str(work_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        (work_dir / 'iter_2.pth').write_bytes(b'the running job\'s checkpoint')
        (work_dir / '.iter_4.pth.1.0.partial').write_bytes(b'being written')
        proc = run_tool('train.py', QUICKSTART, '--work-dir', work_dir, *data_options, *SHORT,
                        cwd=tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert_clear_failure(proc, f'work dir {str(work_dir)!r} is in use',
                         f'PID {holder.pid} on host {socket.gethostname()}, started ')
    assert (work_dir / 'iter_2.pth').read_bytes() == b'the running job\'s checkpoint'
    assert (work_dir / '.iter_4.pth.1.0.partial').exists()


def test_resume_refuses_a_last_checkpoint_outside_the_work_dir(run_tool, data_options,
                                                                tmp_path):
    elsewhere = tmp_path / 'other_run' / 'iter_2.pth'
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b'another run')
    work_dir = tmp_path / 'w'
    work_dir.mkdir()
    (work_dir / 'last_checkpoint').write_text(str(elsewhere))
    proc = run_tool('train.py', QUICKSTART, '--work-dir', work_dir, '--resume', *data_options,
                    cwd=tmp_path)
    assert_clear_failure(proc, f'points to {elsewhere}, outside the work dir',
                         f'--resume {elsewhere}')


def test_train_into_an_unwritable_work_dir(run_tool, data_options, not_a_folder, tmp_path):
    proc = run_tool('train.py', QUICKSTART, '--work-dir', not_a_folder, *data_options,
                    cwd=tmp_path)
    assert_clear_failure(proc, 'work_dir', str(not_a_folder))


def test_train_with_a_full_disk(data_options, tmp_path):
    """Files are limited to 512 KiB (RLIMIT_FSIZE; Python ignores SIGXFSZ, so a write fails
    with EFBIG as on a full disk): the logs fit, the checkpoint does not."""
    script = ('import resource, runpy, sys\n'
              'resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, 512 * 1024))\n'
              f'sys.argv = sys.argv[1:]\nrunpy.run_path({str(ROOT / "tools/train.py")!r}, '
              "run_name='__main__')")
    proc = subprocess.run(
        [sys.executable, '-c', script, 'train.py', str(QUICKSTART), '--work-dir',
         str(tmp_path / 'w'), *data_options, *SHORT], cwd=tmp_path, capture_output=True,
        text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    proc.output = proc.stdout + proc.stderr
    assert_clear_failure(proc, f'cannot write {tmp_path / "w" / "iter_2.pth"}',
                         'nothing was written')
    assert not list((tmp_path / 'w').glob('*.partial')) and not list((tmp_path / 'w').glob(
        '.*.partial'))


# ----------------------------------------------------------------------------- test
def test_test_with_a_nan_checkpoint(run_tool, data_options, nan_checkpoint, tmp_path):
    proc = run_tool('test.py', QUICKSTART, nan_checkpoint, '--work-dir', tmp_path,
                    *data_options, cwd=tmp_path)
    assert_clear_failure(proc, str(nan_checkpoint), 'decode_head.conv_seg.weight')
    assert 'mIoU:' not in proc.output  # no metric printed


def test_test_with_repeated_model_class_names(run_tool, data_options, quickstart_checkpoint,
                                              tmp_path):
    names = "['wall','floor','ceiling','bed','tree','road','grass','floor']"
    proc = run_tool('test.py', QUICKSTART, quickstart_checkpoint, '--work-dir', tmp_path,
                    *data_options, f'model.class_names={names}', cwd=tmp_path)
    assert_clear_failure(proc, 'model.class_names', "'floor' at position 1, position 7")


def test_test_out_into_an_unwritable_place(run_tool, data_options, quickstart_checkpoint,
                                           not_a_folder, tmp_path):
    proc = run_tool('test.py', QUICKSTART, quickstart_checkpoint, '--work-dir', tmp_path,
                    '--out', not_a_folder, *data_options, cwd=tmp_path)
    assert_clear_failure(proc, '--out', str(not_a_folder))


# ----------------------------------------------------------------------------- demo
@pytest.mark.parametrize('content', [b'', b'this is a note, not a picture\n'])
def test_demo_on_a_file_that_is_not_an_image(run_tool, quickstart_checkpoint, content,
                                             tmp_path):
    fake = tmp_path / 'photo.jpg'
    fake.write_bytes(content)
    out = tmp_path / 'out.png'
    out.write_bytes(b'an earlier picture')
    proc = run_tool('demo.py', QUICKSTART, quickstart_checkpoint, fake, '--out', out,
                    cwd=tmp_path)
    assert_clear_failure(proc, f'{fake}: not a readable image')
    assert out.read_bytes() == b'an earlier picture'


def test_demo_with_a_nan_checkpoint_and_repeated_classes(run_tool, image, nan_checkpoint,
                                                         tmp_path):
    proc = run_tool('demo.py', QUICKSTART, nan_checkpoint, image, '--out', tmp_path / 'o.png',
                    cwd=tmp_path)
    assert_clear_failure(proc, str(nan_checkpoint), 'NaN or Inf')
    proc = run_tool('demo.py', QUICKSTART, nan_checkpoint, image, '--out', tmp_path / 'o.png',
                    '--classes', 'grass, sky ,Grass', cwd=tmp_path)
    assert proc.returncode == 2  # argparse's status, before anything is loaded
    assert_clear_failure(proc, 'argument --classes', "'grass' at position 0, position 2")


def test_demo_on_a_device_this_machine_lacks(run_tool, image, quickstart_checkpoint, tmp_path):
    if torch.cuda.is_available():
        pytest.skip('this machine has a CUDA device')  # the GPU machines run the rest
    proc = run_tool('demo.py', QUICKSTART, quickstart_checkpoint, image, '--out',
                    tmp_path / 'p.png', '--device', 'cuda:0', cwd=tmp_path)
    assert_clear_failure(proc, '--device cuda:0: this machine has no CUDA device')
    assert len(proc.output.strip().splitlines()) == 1


def test_demo_out_into_an_unwritable_place(run_tool, image, quickstart_checkpoint,
                                           not_a_folder, tmp_path):
    proc = run_tool('demo.py', QUICKSTART, quickstart_checkpoint, image, '--out',
                    not_a_folder / 'p.png', cwd=tmp_path)
    assert_clear_failure(proc, '--out', str(not_a_folder))


# ----------------------------------------------------------------------------- infer
def test_infer_with_a_nan_checkpoint(run_tool, synthetic_root, nan_checkpoint, tmp_path):
    proc = run_tool('infer.py', QUICKSTART, nan_checkpoint, synthetic_root / 'images',
                    '--out', tmp_path / 'out', '--no-progress', cwd=tmp_path)
    assert_clear_failure(proc, str(nan_checkpoint), 'NaN or Inf')
    assert not list((tmp_path / 'out').glob('**/*.png'))


def test_infer_with_repeated_classes(run_tool, synthetic_root, quickstart_checkpoint,
                                     tmp_path):
    proc = run_tool('infer.py', QUICKSTART, quickstart_checkpoint, synthetic_root / 'images',
                    '--out', tmp_path / 'out', '--classes', 'a,b,c,d,e,f,g,a', cwd=tmp_path)
    assert_clear_failure(proc, '--classes', "'a' at position 0, position 7")


def test_infer_out_into_an_unwritable_place(run_tool, synthetic_root, quickstart_checkpoint,
                                            not_a_folder, tmp_path):
    proc = run_tool('infer.py', QUICKSTART, quickstart_checkpoint, synthetic_root / 'images',
                    '--out', not_a_folder, cwd=tmp_path)
    assert_clear_failure(proc, '--out', str(not_a_folder))


# ----------------------------------------------------------------------------- zero_shot
def test_zero_shot_with_nan_clip_weights_and_repeated_classes(run_tool, image, tmp_path):
    from denseclip.clip import CLIP
    state_dict = CLIP(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1),
                      vision_width=8, vision_patch_size=None, context_length=77,
                      vocab_size=49408, transformer_width=64, transformer_heads=1,
                      transformer_layers=1).state_dict()
    state_dict['visual.conv1.weight'][0] = float('nan')
    weights = tmp_path / 'clip.pth'
    torch.save(state_dict, weights)
    proc = run_tool('zero_shot.py', weights, image, '--classes', 'cat,dog', cwd=tmp_path)
    assert_clear_failure(proc, str(weights), 'visual.conv1.weight')
    proc = run_tool('zero_shot.py', weights, image, '--classes', 'cat,dog,cat', cwd=tmp_path)
    assert_clear_failure(proc, '--classes', "'cat' at position 0, position 2")


# ----------------------------------------------------------------------------- export_onnx
def test_export_onnx_checks_out_before_exporting(run_tool, quickstart_checkpoint,
                                                 not_a_folder, nan_checkpoint, tmp_path):
    start = time.monotonic()
    proc = run_tool('export_onnx.py', QUICKSTART, quickstart_checkpoint, '--out',
                    not_a_folder / 'model.onnx', cwd=tmp_path)
    assert_clear_failure(proc, '--out', str(not_a_folder))
    assert 'exported' not in proc.output and time.monotonic() - start < 60
    proc = run_tool('export_onnx.py', QUICKSTART, nan_checkpoint, '--out',
                    tmp_path / 'model.onnx', cwd=tmp_path)
    assert_clear_failure(proc, str(nan_checkpoint), 'NaN or Inf')
    assert not (tmp_path / 'model.onnx').exists()


# ----------------------------------------------------------------------------- convert
def test_convert_checkpoint_refuses_nan_weights(run_tool, nan_checkpoint, tmp_path):
    out = tmp_path / 'converted.pth'
    proc = run_tool('convert_checkpoint.py', 'denseclip', nan_checkpoint, out, '--config',
                    QUICKSTART, cwd=tmp_path)
    assert_clear_failure(proc, str(nan_checkpoint), 'NaN or Inf')
    assert not out.exists()


# ----------------------------------------------------------------------------- check_dataset
def test_check_dataset_refuses_repeated_class_names(run_tool, data_options, tmp_path):
    names = "['wall','floor','ceiling','bed','tree','road','grass','road ']"
    proc = run_tool('check_dataset.py', QUICKSTART, *data_options,
                    f'val_dataloader.dataset.metainfo.classes={names}', cwd=tmp_path)
    assert_clear_failure(proc, 'metainfo.classes', "'road' at position 5, position 7")
    assert 'no problems found' not in proc.output


def test_check_dataset_makes_the_config_checks_of_every_tool(run_tool, data_options, tmp_path):
    proc = run_tool('check_dataset.py', QUICKSTART, *data_options,
                    'val_dataloader.dataset.pipeline.2.reduce_zero_lable=True', cwd=tmp_path)
    assert_clear_failure(proc, 'val_dataloader.dataset.pipeline[2].reduce_zero_lable',
                         "did you mean 'reduce_zero_label'")


# ----------------------------------------------------------------------------- dist_train
def test_dist_train_with_its_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(['bash', str(ROOT / 'tools/dist_train.sh'), str(QUICKSTART), '2'],
                              env=dict(os.environ, PORT=str(port), PYTHON=sys.executable),
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
    proc.output = proc.stdout + proc.stderr
    assert_clear_failure(proc, f'port {port} on 127.0.0.1 cannot be used', 'PORT=')
    assert len(proc.output.strip().splitlines()) == 1
