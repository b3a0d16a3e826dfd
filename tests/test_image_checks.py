"""The pure image checks: formats, orientation, modes and every rejection reason."""

import io

import pytest
from helpers import image_bytes
from PIL import Image

from core.image_checks import InspectedImage, Rejection, inspect_image_bytes, inspect_image_file


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP", "TIFF"])
def test_every_supported_format_is_accepted(fmt: str) -> None:
    result = inspect_image_bytes(f"x.{fmt.lower()}", image_bytes(fmt, size=(64, 48)))
    assert isinstance(result, InspectedImage)
    assert (result.width, result.height, result.format) == (64, 48, fmt)


@pytest.mark.parametrize(("orientation", "expected"), [(1, (64, 48)), (3, (64, 48)), (6, (48, 64)), (8, (48, 64))])
def test_exif_orientation_is_applied_before_measuring(orientation: int, expected: tuple[int, int]) -> None:
    result = inspect_image_bytes("rotated.jpg", image_bytes("JPEG", size=(64, 48), exif_orientation=orientation))
    assert (result.width, result.height) == expected


@pytest.mark.parametrize(("mode", "orientation"), [("RGB", o) for o in range(1, 9)] + [("L", 6), ("CMYK", 1)])
def test_the_model_gets_pillow_s_upright_pixels_whichever_decoder_reads_the_jpeg(mode: str, orientation: int) -> None:
    """JPEGs decode with OpenCV for speed; the array must be exactly Pillow's, EXIF orientation applied."""
    import numpy as np

    from core.image_checks import load_oriented_bgr, load_oriented_rgb

    noise = np.random.default_rng(orientation).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(noise).convert(mode).save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    data = buffer.getvalue()
    expected = np.asarray(load_oriented_rgb(data))[:, :, ::-1]
    assert load_oriented_bgr(data).shape == expected.shape == ((64, 48, 3) if orientation >= 5 else (48, 64, 3))
    assert np.array_equal(load_oriented_bgr(data), expected)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_grayscale_palette_and_alpha_images_are_accepted(mode: str) -> None:
    result = inspect_image_bytes("x.png", image_bytes("PNG", mode=mode))
    assert isinstance(result, InspectedImage)


def test_input_id_is_the_sha256_of_the_bytes() -> None:
    import hashlib

    data = image_bytes("PNG")
    assert inspect_image_bytes("a.png", data).input_id == hashlib.sha256(data).hexdigest()


def test_empty_file() -> None:
    assert inspect_image_bytes("e.jpg", b"") == Rejection("empty", "e.jpg is empty (0 bytes).")


def test_not_an_image() -> None:
    result = inspect_image_bytes("notes.jpg", b"these are meeting notes, not pixels")
    assert result.code == "not_an_image"
    assert "notes.jpg" in result.reason


def test_truncated_jpeg_is_corrupt() -> None:
    data = image_bytes("JPEG", size=(256, 256))
    result = inspect_image_bytes("cut.jpg", data[: len(data) // 2])
    assert result.code == "corrupt"
    assert result.reason.startswith("cut.jpg is truncated or corrupt")


def noisy_jpeg(size: tuple[int, int], mode: str = "RGB") -> bytes:
    import numpy as np

    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize("kept", [0.5, 0.9, 0.99])
def test_a_large_jpeg_cut_anywhere_is_corrupt(kept: float) -> None:
    """Ingestion decodes JPEGs at 1/8 scale; that still reads the whole stream, so a cut near the end is caught."""
    data = noisy_jpeg((1203, 901))
    result = inspect_image_bytes("cut.jpg", data[: int(len(data) * kept)])
    assert isinstance(result, Rejection) and result.code == "corrupt", result


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_jpeg_sizes_are_the_full_sizes_whatever_the_mode(mode: str) -> None:
    result = inspect_image_bytes("odd.jpg", noisy_jpeg((1203, 901), mode))
    assert (result.width, result.height, result.byte_size) == (1203, 901, len(noisy_jpeg((1203, 901), mode)))


def test_inspected_files_keep_no_bytes_after_they_are_stored(tmp_path) -> None:
    """A 10 000-file batch must not hold every file's bytes in memory until it is written."""
    from core.image_checks import inspect_files

    paths = []
    for index in range(3):
        paths.append(tmp_path / f"{index}.png")
        paths[-1].write_bytes(image_bytes("PNG", colour=(index, 0, 0)))
    stored = {}
    accepted, rejected = inspect_files(paths, 10_000, keep=lambda image: stored.update({image.input_id: image.data}))
    assert rejected == [] and len(accepted) == 3
    assert [image.data for _, image in accepted] == [None, None, None]
    assert [image.byte_size for _, image in accepted] == [len(stored[image.input_id]) for _, image in accepted]


def test_unsupported_content_format() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="GIF")
    result = inspect_image_bytes("anim.jpg", buffer.getvalue())
    assert result.code == "unsupported_format"
    assert "GIF" in result.reason


def test_unsupported_file_type(tmp_path) -> None:
    path = tmp_path / "readme.txt"
    path.write_text("hello")
    assert inspect_image_file(path).code == "unsupported_format"


def test_more_pixels_than_the_limit() -> None:
    result = inspect_image_bytes("big.png", image_bytes("PNG", size=(101, 100)), max_pixels=10_000)
    assert result.code == "too_many_pixels"
    assert "101x100 = 10 100 pixels" in result.reason
    assert isinstance(inspect_image_bytes("ok.png", image_bytes("PNG", size=(100, 100)), max_pixels=10_000),
                      InspectedImage)


def test_unreadable_file(tmp_path) -> None:
    link = tmp_path / "gone.jpg"
    link.symlink_to(tmp_path / "missing-target.jpg")
    result = inspect_image_file(link)
    assert result.code == "unreadable"
    assert result.reason.startswith("gone.jpg could not be read")


def test_a_text_file_is_not_an_image_even_after_ultralytics_patched_pil() -> None:
    from core.settings import DEMO_WEIGHTS
    from resources.detector import Detector

    Detector(weights=str(DEMO_WEIGHTS)).load()  # imports Ultralytics, which patches Image.open
    assert inspect_image_bytes("notes.jpg", b"these are notes").code == "not_an_image"


def forged_jpeg(width: int, height: int) -> bytes:
    """A 64x64 JPEG whose header is rewritten to declare `width` x `height`: a few hundred bytes."""
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 0).save(buffer, "JPEG", quality=50)
    data = bytearray(buffer.getvalue())
    frame = data.find(b"\xff\xc0") + 5  # SOF0: length (2), precision (1), then height and width
    data[frame:frame + 4] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_a_header_declaring_more_pixels_than_its_bytes_can_hold_is_refused_undecoded() -> None:
    """Before, a 380-byte JPEG declaring 7000x7000 was accepted at that size (libjpeg invents the missing pixels),
    and every later decode of it (for the model, for a review page) cost 49 megapixels."""
    forged = forged_jpeg(7000, 7000)
    assert inspect_image_bytes("forged.jpg", forged, 100_000_000) == Rejection(
        "corrupt", f"forged.jpg declares 7000x7000 pixels, more than its {len(forged)} bytes can hold (a JPEG that "
                   "size takes at least 11963): it is damaged or forged, and was not decoded.")
    # Real images that size, as small as their formats make them, are taken.
    for mode, fmt, options in (("L", "JPEG", {"quality": 1}), ("1", "PNG", {"optimize": True})):
        buffer = io.BytesIO()
        Image.new(mode, (7000, 7000), 0).save(buffer, fmt, **options)
        inspected = inspect_image_bytes(f"solid.{fmt.lower()}", buffer.getvalue(), 100_000_000)
        assert isinstance(inspected, InspectedImage) and (inspected.width, inspected.height) == (7000, 7000)


def test_a_decode_under_a_pixel_budget_reduces_a_jpeg_and_refuses_what_cannot_fit() -> None:
    """What the review server does with an image above its budget: a JPEG decodes at the largest of 1/2, 1/4 and
    1/8 scale that fits; a PNG, or a JPEG even 1/8 of which is too large, is refused from its header."""
    import io

    import skimage.data
    from PIL import Image

    from core.image_checks import ImageTooLarge, load_oriented_rgb

    photo = Image.fromarray(skimage.data.astronaut())  # 512 x 512, a real photograph
    encoded = {}
    for kind in ("JPEG", "PNG"):
        buffer = io.BytesIO()
        photo.save(buffer, format=kind)
        encoded[kind] = buffer.getvalue()
    assert load_oriented_rgb(encoded["JPEG"], 512 * 512).size == (512, 512)
    assert load_oriented_rgb(encoded["JPEG"], 100_000).size == (256, 256)
    assert load_oriented_rgb(encoded["JPEG"], 10_000).size == (64, 64)  # 1/8: 4 096 pixels
    with pytest.raises(ImageTooLarge, match=r"^The image is 512 x 512 pixels, more than the 4 000 this server "):
        load_oriented_rgb(encoded["JPEG"], 4_000)
    with pytest.raises(ImageTooLarge, match=r"^The image is 512 x 512 pixels, more than the 100 000 this server "):
        load_oriented_rgb(encoded["PNG"], 100_000)
