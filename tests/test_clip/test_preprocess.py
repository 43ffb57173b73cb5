"""CLIP's image preprocessing: bicubic shorter-side resize, centre crop, CLIP normalisation."""
import numpy as np
import pytest
import torch
from PIL import Image

from denseclip.clip.preprocess import (CLIP_MEAN, CLIP_STD, ImageError, center_crop,
                                       normalize, preprocess, read_image, read_image_rgb,
                                       resize_shortest)


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_constants_are_clips_on_the_0_255_scale():
    torch.testing.assert_close(torch.tensor(CLIP_MEAN) / 255,
                               torch.tensor([0.48145466, 0.4578275, 0.40821073]))
    torch.testing.assert_close(torch.tensor(CLIP_STD) / 255,
                               torch.tensor([0.26862954, 0.26130258, 0.27577711]))


@pytest.mark.parametrize('shape, expected', [
    ((50, 80), (64, 102)),  # 80 * 64 / 50 = 102.4, rounded down as torchvision does
    ((90, 45), (128, 64)),
    ((30, 30), (64, 64)),
    ((200, 100), (128, 64)),  # downscaling
])
def test_resize_shortest_keeps_the_aspect_ratio(shape, expected):
    resized = resize_shortest(random_image(*shape), 64)
    assert resized.shape == (*expected, 3)
    assert resized.dtype == np.uint8


def test_resize_shortest_is_pil_bicubic_with_width_and_height_in_place():
    image = random_image(50, 80)
    expected = np.asarray(Image.fromarray(image).resize((102, 64), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(resize_shortest(image, 64), expected)
    # a horizontal ramp stays a horizontal ramp (rows and columns not swapped)
    ramp = np.repeat(np.repeat(np.linspace(0, 255, 80).astype(np.uint8)[None, :, None], 40, 0),
                     3, 2)
    resized = resize_shortest(ramp, 20).astype(int)
    assert resized.shape == (20, 40, 3)
    assert (resized[0] == resized[-1]).all() and resized[5, -1, 0] - resized[5, 0, 0] > 200


def test_resize_shortest_of_the_right_size_is_an_unchanged_copy():
    image = random_image(64, 70)
    resized = resize_shortest(image, 64)
    np.testing.assert_array_equal(resized, image)
    assert not np.shares_memory(resized, image)


@pytest.mark.parametrize('bad', [np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8),
                                 np.zeros((8, 8, 4), np.uint8), np.zeros((0, 8, 3), np.uint8)])
def test_resize_shortest_refuses_other_arrays(bad):
    with pytest.raises(ValueError, match='image'):
        resize_shortest(bad, 64)


def test_center_crop_takes_the_middle_with_torchvisions_rounding():
    image = np.arange(5 * 8, dtype=np.uint8).reshape(5, 8, 1).repeat(3, axis=2)
    crop = center_crop(image, 3)
    # top = round((5 - 3) / 2) = 1, left = round((8 - 3) / 2) = round(2.5) = 2 (round half even)
    np.testing.assert_array_equal(crop[..., 0], image[1:4, 2:5, 0])
    assert center_crop(image, 5).shape == (5, 5, 3)


def test_center_crop_refuses_small_images():
    with pytest.raises(ValueError, match=r'cannot crop 64x64 pixels from an image of 50x80'):
        center_crop(random_image(50, 80), 64)


def test_normalize_by_hand():
    image = random_image(4, 6)
    tensor = normalize(image)
    assert tensor.shape == (3, 4, 6) and tensor.dtype == torch.float32
    for channel in range(3):
        expected = (image[..., channel].astype(np.float64) - CLIP_MEAN[channel]) / CLIP_STD[channel]
        np.testing.assert_allclose(tensor[channel].numpy(), expected, rtol=0, atol=1e-5)
    mean_colour = np.broadcast_to(np.round(CLIP_MEAN).astype(np.uint8), (2, 2, 3))
    assert normalize(mean_colour).abs().max() < 0.5 / min(CLIP_STD)  # within rounding of 0
    with pytest.raises(ValueError, match='uint8'):
        normalize(image.astype(np.float32))


def test_preprocess_is_resize_crop_normalize():
    image = random_image(50, 80)
    out = preprocess(image, 64)
    assert out.shape == (3, 64, 64)
    resized = np.asarray(Image.fromarray(image).resize((102, 64), Image.Resampling.BICUBIC))
    torch.testing.assert_close(out, normalize(resized[:, 19:83]), rtol=0, atol=0)


def test_read_image_rgb(tmp_path):
    image = random_image(6, 9)
    Image.fromarray(image).save(tmp_path / 'rgb.png')
    np.testing.assert_array_equal(read_image_rgb(tmp_path / 'rgb.png'), image)
    Image.fromarray(image[..., 0]).save(tmp_path / 'grey.png')
    grey = read_image_rgb(str(tmp_path / 'grey.png'))
    assert grey.shape == (6, 9, 3) and (grey == image[..., :1]).all()
    Image.fromarray(np.dstack([image, np.full((6, 9), 7, np.uint8)])).save(tmp_path / 'rgba.png')
    np.testing.assert_array_equal(read_image_rgb(tmp_path / 'rgba.png'), image)


@pytest.mark.parametrize('decoder', ['pil', 'cv2'])
def test_the_one_image_reader_names_a_bad_file(tmp_path, decoder):
    (tmp_path / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
    (tmp_path / 'empty.png').write_bytes(b'')
    (tmp_path / 'notes.jpg').write_text('not an image at all')
    Image.fromarray(random_image(64, 64)).save(tmp_path / 'whole.png')
    data = (tmp_path / 'whole.png').read_bytes()
    (tmp_path / 'cut.png').write_bytes(data[:len(data) // 2])
    for name, reason in [('broken.jpg', 'not a readable image'), ('cut.png', 'not a readable'),
                         ('notes.jpg', 'not a readable image'),
                         ('empty.png', 'the file is empty'), ('missing.png', 'no such file')]:
        with pytest.raises(ImageError, match=rf'^{tmp_path / name}: .*{reason}') as caught:
            read_image(tmp_path / name, decoder=decoder)
        assert caught.value.path == str(tmp_path / name) and reason in caught.value.reason


def test_both_decoders_give_the_same_pixels_for_a_png(tmp_path):
    image = random_image(16, 24)
    Image.fromarray(image).save(tmp_path / 'rgb.png')
    np.testing.assert_array_equal(read_image(tmp_path / 'rgb.png', 'rgb', 'cv2'), image)
    np.testing.assert_array_equal(read_image(tmp_path / 'rgb.png', 'bgr', 'pil'),
                                  image[..., ::-1])
