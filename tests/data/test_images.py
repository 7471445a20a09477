"""Images in: files, data URLs and bytes; the RGB + letterbox rule; bad input refused."""

import io
import tracemalloc

import pytest
import torch
from PIL import Image
from vlm_helpers import png_header_only

from parrot.data.images import MAX_PIXELS, data_url, image_tensor, load_image, png_bytes
from parrot.errors import ParrotError


def png(width: int, height: int, colour=(200, 30, 30), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_file_a_data_url_and_bytes_give_the_same_pixels(tmp_path):
    data = png_bytes(torch.rand(3, 20, 20))
    (tmp_path / "a.png").write_bytes(data)
    from_file = image_tensor(tmp_path / "a.png", 20)
    assert torch.equal(from_file, image_tensor(data, 20))
    assert torch.equal(from_file, image_tensor(data_url(data), 20))
    assert from_file.shape == (3, 20, 20) and 0 <= from_file.min() <= from_file.max() <= 1


def test_jpeg_is_read_too():
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (10, 200, 10)).save(buffer, format="JPEG")
    pixels = image_tensor(buffer.getvalue(), 8)
    assert abs(float(pixels[1].mean()) - 200 / 255) < 0.05


def test_wide_images_are_letterboxed_not_stretched():
    pixels = image_tensor(png(64, 16), 16)  # 16 x 4 after shrinking, centred
    assert torch.all(pixels[:, :6] == 0) and torch.all(pixels[:, 10:] == 0)
    assert torch.allclose(pixels[0, 6:10], torch.full((4, 16), 200 / 255))


def test_transparency_is_composited_onto_black():
    pixels = image_tensor(png(8, 8, (255, 255, 255, 0), "RGBA"), 8)
    assert torch.all(pixels == 0)


def test_a_file_that_is_not_an_image_is_one_sentence(tmp_path):
    (tmp_path / "notes.png").write_text("hello, I am text")
    with pytest.raises(ParrotError, match="not a PNG or JPEG"):
        load_image(tmp_path / "notes.png")


def test_a_truncated_png_is_one_sentence():
    data = png_bytes(torch.rand(3, 64, 64))
    with pytest.raises(ParrotError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_other_formats_and_bad_data_urls_are_refused():
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="GIF")
    with pytest.raises(ParrotError, match="GIF"):
        load_image(buffer.getvalue())
    with pytest.raises(ParrotError, match="base64"):
        load_image("data:image/png;base64,@@@")
    with pytest.raises(ParrotError, match="No image file"):
        load_image("/no/such/picture.png")


def test_a_20000_pixel_square_is_refused_before_any_pixel_is_decoded():
    tracemalloc.start()
    with pytest.raises(ParrotError, match="over 16 megapixels"):
        image_tensor(png_header_only(20000, 20000), 32)
    with pytest.raises(ParrotError, match="20000 x 1000 pixels, over 16 megapixels"):
        image_tensor(png_header_only(20000, 1000), 32)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert 20000 * 20000 > MAX_PIXELS and peak < 2_000_000  # 1.2 GB had it been decoded


def test_a_20000_pixel_wide_strip_is_shrunk_by_the_rule_in_bounded_memory():
    data = png(20000, 200)  # 4 MP: under the limit, read and shrunk
    tracemalloc.start()
    pixels = image_tensor(data, 32)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert pixels.shape == (3, 32, 32)
    band = pixels[0].sum(dim=1) > 0  # 200 * 32 / 20000 rows round to a 1-row centred band
    assert int(band.sum()) == 1 and band[15] and pixels[0, 15].mean() > 0.7
    assert peak < 40_000_000  # the decoded strip is 12 MB; no square canvas of it
