"""tools/infer.py through its command line: a folder, a re-run, a glob, a video, --classes.

The model is the quickstart config's, randomly initialised and saved by the test; the images
are 64 px. Every labels PNG must hold what ``inference_model`` predicts for its image. The
first run over the folder goes through a new process (``run_tool``); the other cases run the
tool in this process (as ``python tools/infer.py ...`` would), which saves the imports.
"""
import json
import os
import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from denseclip.apis import inference_model, init_model

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / 'configs/quickstart/denseclip_tiny-r_fpn_1xb8-1k_synthetic-64x64.py'
CLASSES = ('wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed')
OUTPUTS = ('.png', '_overlay.jpg', '.json')

pytestmark = pytest.mark.usefixtures('single_thread')  # tests/conftest.py



@pytest.fixture(scope='module')
def folder(tmp_path_factory) -> Path:
    """Three 64 px images (one in a sub-folder) and a corrupt JPEG."""
    root = tmp_path_factory.mktemp('images')
    rng = np.random.default_rng(0)
    for name in ('a.png', 'b.png', 'sub/c.png'):
        (root / name).parent.mkdir(exist_ok=True)
        image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        image[8:40, 16:56] = rng.integers(0, 256, 3)
        cv2.imwrite(str(root / name), image)
    (root / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 truncated')
    return root


@pytest.fixture(scope='module')
def first_run(run_tool, quickstart_checkpoint, folder, tmp_path_factory):
    out = tmp_path_factory.mktemp('run') / 'out'
    proc = run_tool('infer.py', CONFIG, quickstart_checkpoint, folder, '--out', out,
                    '--batch-size', '2', cwd=ROOT)
    return proc, out


def run_infer(capsys, *args) -> tuple[int, str]:
    """Runs tools/infer.py in this process: (exit status, stdout + stderr)."""
    argv = sys.argv
    sys.argv = ['tools/infer.py', *map(str, args)]
    try:
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(ROOT / 'tools/infer.py'), run_name='__main__')
    finally:
        sys.argv = argv
    output = capsys.readouterr()
    code = exit_.value.code
    if isinstance(code, str):  # sys.exit('error: ...') prints the message and exits with 1
        return 1, output.out + output.err + code
    return code or 0, output.out + output.err


def check_labels(model, image_path: Path, out: Path, name: str) -> dict:
    """The labels PNG against the model's prediction; returns the JSON."""
    labels = Image.open(out / f'{name}.png')
    assert labels.mode == 'P'
    expected = inference_model(model, str(image_path)).pred_sem_seg.data[0].numpy()
    np.testing.assert_array_equal(np.array(labels), expected)
    palette = np.array(labels.getpalette()[:3 * len(CLASSES)]).reshape(-1, 3)
    np.testing.assert_array_equal(palette, model.dataset_meta['palette'])
    assert cv2.imread(str(out / f'{name}_overlay.jpg')).shape == (*expected.shape, 3)
    summary = json.loads((out / f'{name}.json').read_text())
    assert (summary['height'], summary['width']) == expected.shape
    assert sum(summary['fractions'].values()) == pytest.approx(1)
    counts = np.bincount(expected.ravel(), minlength=len(CLASSES))
    return summary | dict(counts=counts)


def test_a_folder_gets_three_files_per_image_and_the_bad_file_is_named(
        first_run, folder, quickstart_model, quickstart_checkpoint):
    proc, out = first_run
    assert proc.returncode == 1, proc.output
    assert 'wrote 3, skipped 0, failed 1' in proc.output
    assert f'{folder / "broken.jpg"}: not a readable image' in proc.output
    assert 'img/s' in proc.output  # the tqdm progress bar
    assert sorted(str(path.relative_to(out)) for path in out.rglob('*.*')) == sorted(
        f'{name}{end}' for name in ('a', 'b', os.path.join('sub', 'c')) for end in OUTPUTS)
    for name in ('a', 'b', 'sub/c'):
        summary = check_labels(quickstart_model, folder / f'{name}.png', out, name)
        present = {CLASSES[i]: count / 64 ** 2
                   for i, count in enumerate(summary['counts']) if count}
        assert summary['fractions'] == pytest.approx(present)
        assert summary['checkpoint'] == str(quickstart_checkpoint)
        assert summary['config'] == str(CONFIG)
        assert summary['image'] == str(folder / f'{name}.png')


def test_a_second_run_skips_what_the_first_finished(capsys, first_run, quickstart_checkpoint,
                                                    folder):
    _, out = first_run
    times = {path: path.stat().st_mtime_ns for path in out.rglob('*.*')}
    code, output = run_infer(capsys, CONFIG, quickstart_checkpoint, folder, '--out', out)
    assert code == 1, output  # the bad file is still bad
    assert 'wrote 0, skipped 3, failed 1 (skipped: outputs exist' in output
    assert {path: path.stat().st_mtime_ns for path in out.rglob('*.*')} == times


def test_a_glob_with_renamed_classes(capsys, quickstart_checkpoint, folder, tmp_path):
    names = [f'thing{i}' for i in range(len(CLASSES))]
    code, output = run_infer(capsys, CONFIG, quickstart_checkpoint, f'{folder}/**/*.png', '--out',
                             tmp_path, '--classes', ','.join(names), '--no-progress')
    assert code == 0, output
    assert output.strip().splitlines()[-1] == f'{tmp_path}: wrote 3, skipped 0, failed 0'
    # the names reach the text encoder, so the labels are those of a model built with them
    renamed = init_model(CONFIG, str(quickstart_checkpoint),
                         cfg_options={'model.class_names': names})
    summary = check_labels(renamed, folder / 'sub/c.png', tmp_path, 'sub/c')
    assert set(summary['fractions']) == {names[i] for i, n in enumerate(summary['counts']) if n}


def test_classes_of_another_number_than_trained_are_refused(capsys, quickstart_checkpoint, folder,
                                                            tmp_path):
    code, output = run_infer(capsys, CONFIG, quickstart_checkpoint, folder, '--out', tmp_path,
                             '--classes', 'cat,dog')
    assert code == 1
    assert '--classes gives 2 names' in output
    assert 'trained for 8 classes' in output
    assert 'give exactly as many names' in output
    assert not list(tmp_path.iterdir())


def test_a_video_gives_named_frames(capsys, quickstart_checkpoint, tmp_path):
    video = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 5, (64, 48))
    assert writer.isOpened(), 'OpenCV cannot write MJPG here'
    for value in (30, 130, 230):
        writer.write(np.full((48, 64, 3), value, np.uint8))
    writer.release()
    code, output = run_infer(capsys, CONFIG, quickstart_checkpoint, video, '--out',
                             tmp_path / 'out')
    assert code == 0, output
    assert 'wrote 3, skipped 0, failed 0' in output
    for index in (1, 2, 3):
        summary = json.loads((tmp_path / 'out' / f'frame_00000{index}.json').read_text())
        assert (summary['height'], summary['width']) == (48, 64)
        assert summary['image'] == f'{video} frame {index}'
    assert len(list((tmp_path / 'out').iterdir())) == 9


def test_an_empty_folder_is_a_clear_error(capsys, quickstart_checkpoint, tmp_path):
    (tmp_path / 'in').mkdir()
    code, output = run_infer(capsys, CONFIG, quickstart_checkpoint, tmp_path / 'in', '--out',
                             tmp_path / 'out')
    assert code == 1
    assert output.endswith(f'error: {tmp_path / "in"}: no image files (.jpg, .jpeg, .png, '
                           '.bmp, .gif, .tif, .tiff, .webp, .ppm, .pgm) in this folder or below\n')


@pytest.fixture(scope='module')
def conv_onnx(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """An .onnx file as tools/export_onnx.py writes one, made by hand so that no export runs:
    a 1x1 convolution from the normalised image to 8 logits, with the metadata OrtSegmentor
    reads (no test resize, whole inference, any size). Returns the file, weights and bias."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from denseclip.deploy.export import METADATA_KEY
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((len(CLASSES), 3, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(len(CLASSES)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node('Conv', ['input', 'weight', 'bias'], ['logits'])], 'conv',
        [helper.make_tensor_value_info('input', TensorProto.FLOAT, ['N', 3, 'H', 'W'])],
        [helper.make_tensor_value_info('logits', TensorProto.FLOAT, ['N', 8, 'H', 'W'])],
        [numpy_helper.from_array(weight, 'weight'), numpy_helper.from_array(bias, 'bias')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    meta = dict(class_names=list(CLASSES), palette=[[i * 30, 255 - i * 30, 7] for i in range(8)],
                mean=[120.0, 110.0, 100.0], std=[60.0, 55.0, 50.0], bgr_to_rgb=True,
                test_cfg=dict(mode='whole', crop_size=None, stride=None), test_resize=None,
                align_corners=False, input_shape=[None, None], dynamic_shape=True)
    helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    path = tmp_path_factory.mktemp('onnx') / 'conv.onnx'
    onnx.save(model, str(path))
    return path, weight, bias


def test_the_onnxruntime_backend(capsys, conv_onnx, quickstart_checkpoint, folder, tmp_path):
    path, weight, bias = conv_onnx
    code, output = run_infer(capsys, CONFIG, quickstart_checkpoint, f'{folder}/*.png', '--out',
                             tmp_path,
                             '--backend', 'onnxruntime', '--onnx', path)
    assert code == 0, output
    assert 'wrote 2, skipped 0, failed 0' in output
    image = cv2.imread(str(folder / 'a.png'))
    rgb = (image[..., ::-1] - np.array([120, 110, 100])) / np.array([60, 55, 50])
    logits = np.einsum('hwc,kc->khw', rgb, weight[:, :, 0, 0]) + bias[:, None, None]
    top2 = np.sort(logits, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-4  # pixels whose class no rounding can change
    labels = Image.open(tmp_path / 'a.png')
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(np.array(labels)[clear], logits.argmax(axis=0)[clear])
    assert labels.getpalette()[:6] == [0, 255, 7, 30, 225, 7]
    summary = json.loads((tmp_path / 'a.json').read_text())
    assert summary['backend'] == 'onnxruntime' and summary['onnx'] == str(path)
    assert set(summary['fractions']) <= set(CLASSES)


@pytest.mark.parametrize('options, message', [
    (['--backend', 'onnxruntime'], '--backend onnxruntime needs --onnx FILE'),
    (['--onnx', 'x.onnx'], '--onnx FILE is read by --backend onnxruntime only'),
    (['--backend', 'onnxruntime', '--onnx', 'x.onnx', '--batch-size', '4', '--classes', 'a'],
     '--classes, --batch-size: only for --backend torch'),
])
def test_options_that_do_not_go_together_are_refused(capsys, options, message, tmp_path):
    code, output = run_infer(capsys, CONFIG, 'x.pth', tmp_path, '--out', tmp_path, *options)
    assert code == 2 and message in output
