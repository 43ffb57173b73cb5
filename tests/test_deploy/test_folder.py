"""denseclip.deploy.folder without a model: inputs, the three outputs, skipping, batching.

The predictor here is a stand-in whose labels follow from the image (its blue channel mod 3),
so every written file can be checked against what it must hold.
"""
import io
import json
import os
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import denseclip.deploy.folder as folder_module
from denseclip.deploy.folder import (Inputs, class_fractions, labels_png, list_inputs,
                                     output_paths, overlay, read_image, segment_inputs)
from denseclip.deploy.predictors import Predictor, ort_predictor

CLASSES = ('wall', 'sky', 'bed ')
PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)


def labels_of(image: np.ndarray) -> np.ndarray:
    return image[..., 0].astype(np.int64) % len(CLASSES)


def stand_in(batch_size: int = 1, calls: list | None = None) -> Predictor:
    """Labels = blue channel mod 3; ``calls`` records the size of every batch."""
    def predict(images):
        if calls is not None:
            calls.append([image.shape for image in images])
        return [labels_of(image) for image in images]
    return Predictor(predict, CLASSES, PALETTE, batch_size)


def write_image(path: Path, height: int = 16, width: int = 24, seed: int = 0) -> np.ndarray:
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return image


@pytest.fixture
def folder(tmp_path) -> Path:
    """a.png, b.png, sub/c.png (lossless), and bad.jpg (not an image)."""
    root = tmp_path / 'images'
    for seed, name in enumerate(('a.png', 'b.png', 'sub/c.png')):
        write_image(root / name, seed=seed)
    (root / 'bad.jpg').write_bytes(b'not a jpeg')
    (root / 'notes.txt').write_text('not an image by its name')
    return root


# ----------------------------------------------------------------------------- inputs
def test_a_folder_is_searched_recursively_for_images_and_named_without_extension(folder):
    inputs = list_inputs(folder)
    assert inputs.video is None
    assert inputs.images == [(name, str(folder / path)) for name, path in (
        ('a', 'a.png'), ('b', 'b.png'), ('bad', 'bad.jpg'), (os.path.join('sub', 'c'),
                                                             os.path.join('sub', 'c.png')))]


def test_the_output_folder_inside_the_input_folder_is_no_input(folder):
    write_image(folder / 'out' / 'a.png')
    names = [name for name, _ in list_inputs(folder, exclude=str(folder / 'out')).images]
    assert os.path.join('out', 'a') not in names and 'a' in names
    assert os.path.join('out', 'a') in [name for name, _ in list_inputs(folder).images]


def test_a_glob_names_its_matches_relative_to_its_fixed_part(folder):
    inputs = list_inputs(f'{folder}/**/*.png')
    assert [name for name, _ in inputs.images] == ['a', 'b', os.path.join('sub', 'c')]
    assert [name for name, _ in list_inputs(f'{folder}/sub/c.*').images] == ['c']


def test_one_image_file_is_an_input_of_one(folder):
    assert list_inputs(folder / 'sub' / 'c.png').images == [('c', str(folder / 'sub/c.png'))]


@pytest.mark.parametrize('make, message', [
    (lambda root: root, 'no image files'),
    (lambda root: f'{root}/*.jpg', 'the pattern matches no image files'),
    (lambda root: root / 'missing', 'no such file or folder'),
    (lambda root: root / 'notes.txt', 'neither an image'),
])
def test_empty_or_wrong_input_is_refused_by_name(tmp_path, make, message):
    (tmp_path / 'notes.txt').write_text('x')
    source = make(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as error:
        list_inputs(source)
    assert str(source) in str(error.value)


def test_two_images_that_would_write_the_same_files_are_refused(tmp_path):
    write_image(tmp_path / 'x.png')
    write_image(tmp_path / 'x.jpg')
    with pytest.raises(ValueError, match=r'x\.jpg and .*x\.png would both write x\.png'):
        list_inputs(tmp_path)


def test_a_corrupt_or_empty_file_is_a_value_error(tmp_path):
    (tmp_path / 'empty.png').write_bytes(b'')
    (tmp_path / 'junk.png').write_bytes(b'\x89PNG junk')
    for name in ('empty.png', 'junk.png'):
        with pytest.raises(ValueError, match='not a readable image'):
            read_image(str(tmp_path / name))
    with pytest.raises(ValueError, match='cannot be read'):
        read_image(str(tmp_path / 'missing.png'))


def test_a_grey_image_is_read_as_three_channels(tmp_path):
    cv2.imwrite(str(tmp_path / 'grey.png'), np.full((5, 7), 9, np.uint8))
    image = read_image(str(tmp_path / 'grey.png'))
    assert image.shape == (5, 7, 3) and image.dtype == np.uint8 and (image == 9).all()


# ----------------------------------------------------------------------------- outputs
def test_fractions_name_the_present_classes_largest_first_and_sum_to_one():
    labels = np.array([[0, 0, 2], [2, 2, 2]])
    fractions = class_fractions(labels, CLASSES)
    assert list(fractions.items()) == [('bed', 4 / 6), ('wall', 2 / 6)]  # 'sky' absent
    assert sum(fractions.values()) == pytest.approx(1)


def test_the_labels_png_reads_back_as_labels_with_the_palette():
    labels = np.array([[0, 1, 2], [2, 1, 0]])
    png = Image.open(io.BytesIO(labels_png(labels, PALETTE)))
    assert png.mode == 'P'
    np.testing.assert_array_equal(np.array(png), labels)
    assert png.getpalette()[:9] == PALETTE.ravel().tolist()
    np.testing.assert_array_equal(np.array(png.convert('RGB')), PALETTE[labels])


def test_the_overlay_blends_the_bgr_image_with_the_rgb_palette():
    image = np.full((1, 2, 3), 100, np.uint8)
    blended = overlay(image, np.array([[0, 2]]), PALETTE, opacity=0.25)
    # label 0 is red: BGR (0, 0, 255); label 2 is blue: BGR (255, 0, 0)
    np.testing.assert_array_equal(blended[0, 0], [75, 75, 139])  # 0.75 * 100 + 0.25 * 255
    np.testing.assert_array_equal(blended[0, 1], [139, 75, 75])


# --------------------------------------------------------------------------------- loop
def check_outputs(out: Path, name: str, image: np.ndarray, info: dict) -> None:
    paths = output_paths(str(out), name)
    labels = labels_of(image)
    np.testing.assert_array_equal(np.array(Image.open(paths.labels)), labels)
    assert cv2.imread(paths.overlay).shape == image.shape
    summary = json.loads(Path(paths.summary).read_text())
    assert (summary['height'], summary['width']) == image.shape[:2]
    assert summary['fractions'] == class_fractions(labels, CLASSES)
    assert sum(summary['fractions'].values()) == pytest.approx(1)
    assert {key: summary[key] for key in info} == info


def test_every_image_gets_three_files_and_a_bad_one_is_listed(folder, tmp_path, capsys):
    out = tmp_path / 'out'
    info = dict(config='c.py', checkpoint='c.pth', backend='torch')
    summary = segment_inputs(stand_in(), list_inputs(folder), str(out), info=info,
                             progress=False)
    assert summary.written == ['a', 'b', os.path.join('sub', 'c')]
    assert summary.skipped == []
    assert summary.failed == [(str(folder / 'bad.jpg'), 'not a readable image (empty, corrupt '
                               'or of an unknown format)')]
    assert f'{folder / "bad.jpg"}: not a readable image' in capsys.readouterr().out
    for name in ('a', 'b', 'sub/c'):
        check_outputs(out, name, cv2.imread(str(folder / f'{name}.png')), info)
    assert sorted(path.name for path in out.rglob('*')) == sorted(
        ['sub'] + [f'{name}{end}' for name in 'abc' for end in ('.png', '_overlay.jpg', '.json')])


def test_a_second_run_skips_finished_images_and_redoes_half_finished_ones(folder, tmp_path):
    out = tmp_path / 'out'
    segment_inputs(stand_in(), list_inputs(folder), str(out), progress=False)
    times = {path: path.stat().st_mtime_ns for path in out.rglob('*.*')}
    os.remove(output_paths(str(out), 'b').overlay)  # as if killed between two files
    (out / '.a.png.123.abcd.partial').write_bytes(b'half')  # as a kill leaves it
    summary = segment_inputs(stand_in(), list_inputs(folder), str(out), progress=False)
    assert summary.skipped == ['a', os.path.join('sub', 'c')]
    assert summary.written == ['b']
    assert not (out / '.a.png.123.abcd.partial').exists()
    for path, time in times.items():
        if path.name.startswith('a') or path.name.startswith('c'):
            assert path.stat().st_mtime_ns == time, path
    again = segment_inputs(stand_in(), list_inputs(folder), str(out), overwrite=True,
                           progress=False)
    assert again.skipped == [] and len(again.written) == 3


def test_an_overwrite_killed_after_the_png_leaves_the_image_to_be_redone(folder, tmp_path,
                                                                          monkeypatch):
    out = tmp_path / 'out'
    segment_inputs(stand_in(), list_inputs(folder), str(out), progress=False)
    paths = output_paths(str(out), 'a')
    old_overlay = Path(paths.overlay).read_bytes()
    real_write = folder_module.atomic_write

    def killed_after_png(path, data):  # the overwrite dies once the new PNG is written
        if path != paths.labels:
            raise KeyboardInterrupt
        real_write(path, data)

    shifted = Predictor(lambda images: [(labels_of(image) + 1) % 3 for image in images],
                        CLASSES, PALETTE)  # labels unlike the first run's
    monkeypatch.setattr(folder_module, 'atomic_write', killed_after_png)
    with pytest.raises(KeyboardInterrupt):
        segment_inputs(shifted, list_inputs(folder / 'a.png'), str(out), overwrite=True,
                       progress=False)
    monkeypatch.undo()
    # the new PNG next to the old overlay: the JSON, deleted first, marks the image unfinished
    assert not Path(paths.summary).exists()
    assert Path(paths.overlay).read_bytes() == old_overlay
    image = cv2.imread(str(folder / 'a.png'))
    np.testing.assert_array_equal(np.array(Image.open(paths.labels)),
                                  (labels_of(image) + 1) % 3)
    summary = segment_inputs(stand_in(), list_inputs(folder), str(out), progress=False)
    assert summary.written == ['a']
    assert summary.skipped == ['b', os.path.join('sub', 'c')]
    check_outputs(out, 'a', image, {})


def test_images_of_one_size_share_a_batch(tmp_path):
    sizes = [(16, 24), (8, 8), (16, 24), (16, 24), (8, 8)]
    for index, (height, width) in enumerate(sizes):
        write_image(tmp_path / 'in' / f'{index}.png', height, width, seed=index)
    calls = []
    summary = segment_inputs(stand_in(batch_size=2, calls=calls), list_inputs(tmp_path / 'in'),
                             str(tmp_path / 'out'), progress=False)
    assert calls == [[(16, 24, 3)] * 2, [(8, 8, 3)] * 2, [(16, 24, 3)]]
    assert sorted(summary.written) == ['0', '1', '2', '3', '4']
    for index in range(5):
        check_outputs(tmp_path / 'out', str(index),
                      cv2.imread(str(tmp_path / 'in' / f'{index}.png')), {})


def test_an_error_of_the_model_names_the_images_and_stops(folder, tmp_path):
    def fail(images):
        raise RuntimeError('out of memory')
    with pytest.raises(RuntimeError, match=r'the model failed on .*a\.png: out of memory'):
        segment_inputs(Predictor(fail, CLASSES, PALETTE), list_inputs(folder),
                       str(tmp_path / 'out'), progress=False)


def test_a_video_gives_one_named_frame_each(tmp_path):
    video = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 5, (32, 16))
    assert writer.isOpened(), 'OpenCV cannot write MJPG here'
    for value in (0, 120, 250):
        writer.write(np.full((16, 32, 3), value, np.uint8))
    writer.release()
    inputs = list_inputs(video)
    assert inputs == Inputs([], video=str(video))
    out = tmp_path / 'out'
    summary = segment_inputs(stand_in(), inputs, str(out), progress=False)
    assert summary.written == ['frame_000001', 'frame_000002', 'frame_000003']
    capture = cv2.VideoCapture(str(video))
    for name in summary.written:
        ok, frame = capture.read()
        check_outputs(out, name, frame, dict(image=f'{video} frame {int(name[-6:])}'))
    again = segment_inputs(stand_in(), inputs, str(out), progress=False)
    assert again.skipped == summary.written and again.written == []


def test_a_file_that_is_no_video_is_refused(tmp_path):
    (tmp_path / 'fake.mp4').write_bytes(b'no video here')
    with pytest.raises(ValueError, match=r'fake\.mp4: OpenCV (cannot open|reads no frame)'):
        list_inputs(tmp_path / 'fake.mp4')


# ------------------------------------------------------------------------- ONNX Runtime
class LogitsOfBlue:
    """An ``OrtSegmentor`` as ``ort_predictor`` uses it: logits ``[K, H, W]`` that make the
    labels ``labels_of(image)``; ``shape`` wrong on purpose when asked."""
    class_names = CLASSES
    palette = PALETTE.tolist()

    def __init__(self, onnx_file: str, bad_shape: bool = False):
        self.bad_shape = bad_shape

    def predict(self, image: np.ndarray) -> np.ndarray:
        logits = np.stack([labels_of(image) == k for k in range(len(CLASSES))]).astype(np.float32)
        return logits[:, 1:] if self.bad_shape else logits


def test_the_onnx_predictor_takes_the_argmax_and_the_files_classes(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'denseclip.deploy.ort',
                        types.SimpleNamespace(OrtSegmentor=LogitsOfBlue))
    predictor = ort_predictor('model.onnx')
    assert predictor.class_names == CLASSES and predictor.batch_size == 1
    np.testing.assert_array_equal(predictor.palette, PALETTE)
    image = write_image(tmp_path / 'x.png')
    np.testing.assert_array_equal(predictor.predict([image])[0], labels_of(image))
    monkeypatch.setitem(sys.modules, 'denseclip.deploy.ort', types.SimpleNamespace(
        OrtSegmentor=lambda path: LogitsOfBlue(path, bad_shape=True)))
    with pytest.raises(RuntimeError, match=r'model\.onnx gave logits of shape \(3, 15, 24\)'):
        ort_predictor('model.onnx').predict([image])
