"""The guarded decoder: caps before decoding, allow-listed plug-ins only, typed refusals."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import struct
import threading
import tracemalloc
import warnings
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

import nbbatch.images._decode as images_mod
from nbbatch.errors import ConfigError, ImageRejectedError
from nbbatch.images._decode import (
    DEFAULT_LIMITS,
    UPLOAD_LIMITS,
    ImageLimits,
    decode_image,
    decode_image_async,
    inspect_image,
    inspect_image_async,
    sanitize_image,
    sniff_format,
)

ALLOWED = {"PNG", "JPEG", "WEBP", "GIF"}


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_chunk(ctype: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(ctype + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def bomb_png(side: int = 20_000) -> bytes:
    """A valid 1-bit greyscale PNG of side×side black pixels: ~50 KB on disk, 400 MB decoded."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return bomb_png()


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


@pytest.mark.parametrize(
    ("fmt", "mode"), [("PNG", "RGBA"), ("JPEG", "RGB"), ("WEBP", "RGB"), ("GIF", "P")]
)
def test_accepts_each_allowed_format_and_reports_its_size(fmt: str, mode: str) -> None:
    data = encode(Image.new(mode, (33, 17)), fmt)
    info = inspect_image(data)
    assert (info.format, info.width, info.height) == (fmt, 33, 17)
    assert info.mime == f"image/{fmt.lower()}"


def test_byte_cap_is_checked_before_any_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(Image.new("RGB", (64, 64)), "PNG")
    limits = ImageLimits(max_bytes=len(data) - 1)

    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("Image.open must not be reached when the byte cap is exceeded")

    monkeypatch.setattr(images_mod.Image, "open", no_open)
    with pytest.raises(ImageRejectedError) as err:
        inspect_image(data, limits)
    assert err.value.reason == "too_many_bytes"
    assert (err.value.limit, err.value.actual) == (len(data) - 1, len(data))


def test_upload_limit_is_ten_megabytes() -> None:
    assert UPLOAD_LIMITS.max_bytes == 10 * 1024 * 1024
    assert UPLOAD_LIMITS.max_pixels < Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize(
    ("data", "detected"),
    [
        (encode(Image.new("RGB", (4, 4)), "TIFF"), "TIFF"),
        (encode(Image.new("RGB", (4, 4)), "BMP"), "BMP"),
        (b"SIMPLE  =                    T" + b" " * 100, "FITS"),
        (b"8BPS\x00\x01" + b"\x00" * 40, "PSD"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
        (b"just some text", "unknown data"),
    ],
)
def test_other_formats_are_refused_naming_what_was_found(data: bytes, detected: str) -> None:
    with pytest.raises(ImageRejectedError) as err:
        inspect_image(data)
    assert err.value.reason == "format"
    assert detected in str(err.value)


def test_a_format_can_be_taken_off_the_allow_list() -> None:
    gif = encode(Image.new("P", (4, 4)), "GIF")
    with pytest.raises(ImageRejectedError) as err:
        inspect_image(gif, ImageLimits(formats=("PNG", "JPEG")))
    assert err.value.reason == "format"


def test_pixel_cap_reports_limit_and_actual() -> None:
    data = encode(Image.new("L", (1200, 1000)), "PNG")
    with pytest.raises(ImageRejectedError) as err:
        inspect_image(data, ImageLimits(max_pixels=1_000_000))
    assert err.value.reason == "too_many_pixels"
    assert (err.value.limit, err.value.actual) == (1_000_000, 1_200_000)


def spy_on_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every pixel decode Pillow starts (``ImageFile.load``), by format.

    "Refused before decoding" is then a structural fact, not a wall-clock bound: a
    bomb's speed figure lives in benchmarks/bench_images.py.
    """
    loads: list[str] = []
    real_load = ImageFile.ImageFile.load

    def load(self: ImageFile.ImageFile) -> Any:
        loads.append(str(self.format))
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return loads


def test_pixel_decoding_spy_sees_an_ordinary_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = spy_on_pixel_decoding(monkeypatch)
    inspect_image(encode(Image.new("RGB", (8, 8)), "PNG"))
    assert loads == ["PNG"]  # so an empty list below means "never decoded"


def test_decompression_bomb_is_refused_without_decoding_or_memory_growth(
    bomb: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(bomb) < 200_000  # tiny file ...
    loads = spy_on_pixel_decoding(monkeypatch)
    rss_before = rss_bytes()
    tracemalloc.start()
    try:
        with pytest.raises(ImageRejectedError) as err:
            inspect_image(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown = rss_bytes() - rss_before
    assert err.value.reason == "too_many_pixels"
    assert err.value.actual == 20_000 * 20_000  # ... declaring 400 megapixels
    assert loads == []  # refused from the header: not one pixel decoded
    assert peak < 5 * 1024 * 1024  # Python-side allocations during the refusal
    assert grown < 100 * 1024 * 1024  # whole process, C allocations included


def test_pillows_own_bomb_check_still_applies_behind_ours(
    bomb: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend our header reader could not make sense of the file: the plug-in's size
    # (and Pillow's own DecompressionBombError) must still stop it before decoding.
    monkeypatch.setattr(images_mod, "header_size", lambda data, fmt: None)
    loads = spy_on_pixel_decoding(monkeypatch)
    with pytest.raises(ImageRejectedError) as err:
        inspect_image(bomb)
    assert err.value.reason == "too_many_pixels"
    assert loads == []  # stopped at Image.open, before any pixel was decoded


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_pixels": Image.MAX_IMAGE_PIXELS + 1},
        {"max_pixels": 0},
        {"max_bytes": 0},
        {"formats": ("PNG", "TIFF")},
        {"formats": ()},
    ],
)
def test_limits_are_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ImageLimits(**kwargs)  # type: ignore[arg-type]


def test_decoding_in_threads_leaves_the_warning_filters_alone() -> None:
    # warnings.catch_warnings() is not thread-safe; the decoder must not rely on it.
    before = list(warnings.filters)
    jpeg = jpeg_with_orientation(6)
    png = encode(Image.new("RGB", (300, 300)), "PNG")

    def work(i: int) -> tuple[int, int]:
        with decode_image(jpeg if i % 2 else png) as img:
            return img.size

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        sizes = list(ex.map(work, range(200)))
    assert set(sizes) == {(20, 40), (300, 300)}
    assert warnings.filters == before


def jpeg_with_truncated_exif() -> bytes:
    plain = encode(Image.new("RGB", (40, 20)), "JPEG")
    # IFD0 claims 5 entries but the segment ends inside the first one.
    payload = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03\x00\x00"
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return plain[:2] + segment + plain[2:]


def test_corrupt_exif_does_not_cost_the_image() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a notebook shows Pillow's warning and goes on
        with decode_image(jpeg_with_truncated_exif()) as img:
            assert img.size == (40, 20)


def test_corrupt_exif_under_warnings_as_errors_is_a_typed_refusal() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the strictest setting an app may have
        with pytest.raises(ImageRejectedError) as err:
            decode_image(jpeg_with_truncated_exif())
    assert err.value.reason == "corrupt"


def test_decode_image_refuses_the_bomb_too(bomb: bytes) -> None:
    with pytest.raises(ImageRejectedError):
        decode_image(bomb)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_files_are_refused_as_corrupt(fmt: str) -> None:
    img = Image.effect_noise((128, 128), 60).convert("RGB")
    data = encode(img, fmt)
    with pytest.raises(ImageRejectedError) as err:
        inspect_image(data[: len(data) // 2])
    assert err.value.reason == "corrupt"


def jpeg_with_orientation(orientation: int, size: tuple[int, int] = (40, 20)) -> bytes:
    img = Image.new("RGB", size, (200, 0, 0))
    img.paste((0, 0, 200), (0, 0, 10, 10))  # a blue corner to see where it went
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", exif=exif.tobytes(), quality=95)


def test_decode_applies_exif_orientation_but_inspect_reports_stored_size() -> None:
    data = jpeg_with_orientation(6)  # "rotate 90 CW to view"
    assert (inspect_image(data).width, inspect_image(data).height) == (40, 20)
    with decode_image(data) as img:
        assert img.size == (20, 40)
        r, _, b = img.getpixel((15, 5))  # type: ignore[misc]
        assert b > 150 and r < 80  # the blue corner moved to the top right


def test_decode_without_orientation_keeps_the_image_as_is() -> None:
    data = jpeg_with_orientation(1)
    with decode_image(data) as img:
        assert img.size == (40, 20)


def test_draft_decodes_large_jpeg_at_reduced_scale() -> None:
    data = encode(Image.new("RGB", (2048, 1024)), "JPEG")
    with decode_image(data, draft=(256, 256)) as img:
        assert img.size == (512, 256)  # 1/4 scale, still at least the requested box


def test_sanitize_reencodes_and_drops_metadata() -> None:
    data = jpeg_with_orientation(6)
    clean, info = sanitize_image(data, format="PNG")
    assert sniff_format(clean) == "PNG"
    assert (info.width, info.height) == (20, 40)
    with Image.open(io.BytesIO(clean)) as img:
        assert not img.getexif()
        assert img.size == (20, 40)


async def test_async_variants_run_off_the_loop() -> None:
    data = encode(Image.new("RGB", (8, 8)), "PNG")
    info = await inspect_image_async(data)
    img = await decode_image_async(data)
    assert info.width == 8 and img.size == (8, 8)


async def test_async_decode_gives_up_after_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    release, finished = threading.Event(), threading.Event()

    def stuck(data: bytes, limits: ImageLimits) -> Image.Image:
        # Blocks until the test lets go: had the timeout not freed the caller, the
        # decode would return an image (after 30 s at worst) and no error would be raised.
        try:
            release.wait(30)
            return Image.new("RGB", (1, 1))
        finally:
            finished.set()

    monkeypatch.setattr(images_mod, "decode_image", stuck)
    try:
        with pytest.raises(ImageRejectedError) as err:
            await decode_image_async(b"", timeout=0.02)
        assert err.value.reason == "too_slow"
        assert not finished.is_set()  # the caller was freed while the decode still ran
    finally:
        release.set()
        # let the worker thread finish before the loop closes
        assert await asyncio.to_thread(finished.wait, 30)


# ----------------------------------------------------------------- random bytes
@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace every Pillow plug-in outside the allow-list with one that records a hit."""
    Image.init()
    hits: list[str] = []
    for fid in list(Image.OPEN):
        if fid in ALLOWED:
            continue

        def factory(fp: object, filename: object = None, _fid: str = fid) -> Image.Image:
            hits.append(_fid)
            raise SyntaxError("tripwire")

        def accept(prefix: bytes, _fid: str = fid) -> bool:
            hits.append(_fid)
            return False

        monkeypatch.setitem(Image.OPEN, fid, (factory, accept))
    return hits


def test_tripwire_catches_an_unrestricted_open(tripwire: list[str]) -> None:
    # Control: plain Image.open (no formats=) does consult the other plug-ins.
    data = encode(Image.new("RGB", (4, 4)), "TIFF")
    with pytest.raises(Exception):  # noqa: B017 - any failure; we only look at the hits
        Image.open(io.BytesIO(data))
    assert tripwire


MAGICS = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    b"\xff\xd8\xff",
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"RIFF\x00\x00\x00\x00WEBPVP8L",
    b"GIF89a",
    b"GIF87a",
    b"II*\x00",
    b"BM",
    b"SIMPLE  =",
]


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(prefix=st.sampled_from(MAGICS), body=st.binary(max_size=600))
def test_random_bytes_never_escape_as_other_errors(
    tripwire: list[str], prefix: bytes, body: bytes
) -> None:
    data = prefix + body
    try:
        info = inspect_image(data, ImageLimits(max_pixels=4_000_000))
    except ImageRejectedError as exc:
        assert exc.reason in {"format", "corrupt", "too_many_pixels", "too_many_bytes"}
    else:
        assert info.format in ALLOWED
    assert tripwire == []


@settings(max_examples=200, deadline=None)
@given(
    fmt=st.sampled_from(["PNG", "JPEG", "WEBP", "GIF"]),
    cut=st.integers(min_value=0, max_value=2000),
    flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=8),
)
def test_mutated_real_images_are_decoded_or_refused(
    fmt: str, cut: int, flips: list[tuple[int, int]]
) -> None:
    base = bytearray(encode(Image.new("RGB", (24, 24), (9, 99, 199)), fmt))
    for pos, value in flips:
        if pos < len(base):
            base[pos] = value
    data = bytes(base[: max(1, len(base) - cut)])
    try:
        with decode_image(data, ImageLimits(max_pixels=4_000_000)) as img:
            assert img.width * img.height <= 4_000_000
    except ImageRejectedError:
        pass


def test_default_limits_sit_well_below_pillows_bomb_threshold() -> None:
    assert DEFAULT_LIMITS.max_pixels * 2 < Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("PNG", {}),
        ("JPEG", {}),
        ("JPEG", {"progressive": True}),
        ("WEBP", {"quality": 80}),
        ("WEBP", {"lossless": True}),
        ("WEBP", {"exif": Image.Exif().tobytes()}),  # extended format: VP8X header
        ("GIF", {}),
    ],
)
def test_header_size_reads_what_pillow_reads(fmt: str, options: dict[str, object]) -> None:
    data = encode(Image.new("RGB", (301, 157)), fmt, **options)
    assert images_mod.header_size(data, fmt) == (301, 157)


def test_declared_size_is_refused_before_pillow_opens_the_file(
    bomb: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("the header check should have refused the file already")

    monkeypatch.setattr(images_mod.Image, "open", no_open)
    with pytest.raises(ImageRejectedError) as err:
        inspect_image(bomb)
    assert err.value.actual == 20_000 * 20_000
