import numpy as np
import pytest
from PIL import Image

from asymsr.util.images import ImageReadError, list_images, read_image, write_png
from tests.conftest import smooth_image


def test_reads_every_supported_mode(tmp_path):
    rgb = smooth_image(20, 30, seed=4)
    gray = rgb[..., 0]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.bmp")
    Image.fromarray(rgb).save(tmp_path / "rgb.webp", lossless=True)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    rgba = np.dstack([rgb, np.full(gray.shape, 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(tmp_path / "palette.png")
    Image.fromarray(np.dstack([gray, gray]), "LA").save(tmp_path / "la.png")
    sixteen = gray.astype(np.uint16) * 257 + 128
    Image.fromarray(sixteen).save(tmp_path / "gray16.png")

    assert np.array_equal(read_image(tmp_path / "rgb.png"), rgb)
    assert np.array_equal(read_image(tmp_path / "rgb.bmp"), rgb)
    assert np.array_equal(read_image(tmp_path / "rgb.webp"), rgb)
    assert np.array_equal(read_image(tmp_path / "gray.png"), gray)
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgb)
    palette = read_image(tmp_path / "palette.png")
    assert palette.shape == rgb.shape and palette.dtype == np.uint8
    assert np.array_equal(read_image(tmp_path / "la.png"), gray)
    assert np.array_equal(read_image(tmp_path / "gray16.png"), gray)  # round((257 g + 128) / 257) = g


def test_errors_name_the_file(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ImageReadError, match="broken.png"):
        read_image(broken)
    truncated = tmp_path / "truncated.png"
    Image.fromarray(smooth_image(64, 64)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="truncated.png"):
        read_image(truncated)
    with pytest.raises(ImageReadError, match="missing.png: no such image file"):
        read_image(tmp_path / "missing.png")


def test_list_images_and_write_png(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_images(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no images"):
        list_images(tmp_path)
    write_png(tmp_path / "b.PNG", np.zeros((3, 3), np.uint8))
    write_png(tmp_path / "a.png", np.zeros((3, 3, 3), np.uint8))
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.PNG"]
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError, match="uint8"):
        write_png(tmp_path / "c.png", np.zeros((3, 3), np.float32))
