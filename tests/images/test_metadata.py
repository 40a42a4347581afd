"""Generation parameters embedded in files: A1111 infotext, nbbatch record, other tools."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops, PngImagePlugin

from nbbatch import Batch, Params, Task, Workspace, read_generation_info, task_from_image
from nbbatch.errors import ImageError, ImageRejectedError
from nbbatch.images._decode import inspect_image
from nbbatch.images._metadata import (
    embed_metadata,
    format_infotext,
    generation_record,
    parse_infotext,
)
from nbbatch.providers._demo import DemoProvider


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_text_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(chunk type, keyword) of every text chunk, in file order."""
    out = []
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        if ctype in (b"tEXt", b"iTXt", b"zTXt"):
            out.append((ctype, data[pos + 8 : pos + 8 + length].split(b"\x00")[0]))
        pos += 12 + length
    return out


def a_record(prompt: str = "a red fox, in snow", **extra: object) -> dict[str, object]:
    task = Task(
        prompt,
        params=Params(
            seed=42,
            steps=30,
            cfg_scale=6.5,
            sampler="DPM++ 2M",
            negative_prompt="blurry, lowres",
            model="sdxl-base",
        ),
        parent_id="parent123456",
    )
    task.batch_id = "batch0000001"
    record = generation_record(task, provider="demo", seed=42, index=0, info={"x": 1})
    record.update(extra)
    return record


# ------------------------------------------------------------------ A1111 infotext
DOCUMENTED = (
    "masterpiece, a cat sitting on a chair\n"
    "Negative prompt: lowres, bad anatomy\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234567890, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.6.0"
)


def test_parses_the_documented_infotext() -> None:
    info = parse_infotext(DOCUMENTED)
    assert info.source == "a1111"
    assert info.prompt == "masterpiece, a cat sitting on a chair"
    assert info.negative_prompt == "lowres, bad anatomy"
    assert (info.steps, info.sampler, info.cfg_scale) == (20, "Euler a", 7.0)
    assert info.seed == 1234567890
    assert (info.width, info.height) == (512, 768)
    assert info.model == "v1-5-pruned-emaonly"
    assert info.extras["Model hash"] == "6ce0161689"
    assert info.extras["Version"] == "v1.6.0"


def test_quoted_values_may_hold_commas_colons_and_escapes() -> None:
    text = (
        "a dog\n"
        'Steps: 10, Lora hashes: "detail: abc123, style: def456", '
        'Note: "say \\"hi\\", then go", Seed: 7, Size: 64x64'
    )
    info = parse_infotext(text)
    assert info.extras["Lora hashes"] == "detail: abc123, style: def456"
    assert info.extras["Note"] == 'say "hi", then go'
    assert (info.steps, info.seed) == (10, 7)


def test_multi_line_prompt_and_negative_prompt() -> None:
    text = (
        "line one of the prompt\n"
        "line two, with commas\n"
        "Negative prompt: bad hands\n"
        "watermark, text\n"
        "Steps: 25, Sampler: DDIM, CFG scale: 5.5, Seed: 3, Size: 640x480"
    )
    info = parse_infotext(text)
    assert info.prompt == "line one of the prompt\nline two, with commas"
    assert info.negative_prompt == "bad hands\nwatermark, text"
    assert info.cfg_scale == 5.5


def test_missing_negative_prompt_is_none() -> None:
    info = parse_infotext("just a prompt\nSteps: 20, Seed: 5, Size: 512x512")
    assert info.prompt == "just a prompt"
    assert info.negative_prompt is None
    assert info.seed == 5


def test_a_last_line_with_fewer_than_three_pairs_is_prompt_text() -> None:
    info = parse_infotext("portrait\nstyle: baroque, mood: dark")
    assert info.prompt == "portrait\nstyle: baroque, mood: dark"
    assert info.seed is None and info.steps is None


def test_format_quotes_values_that_would_break_the_line() -> None:
    text = format_infotext(
        "p", None, {"Steps": 4, "Sampler": "a, b: c", "Seed": 1, "CFG scale": 7.0}
    )
    assert text.splitlines()[-1] == 'Steps: 4, Sampler: "a, b: c", Seed: 1, CFG scale: 7'


line = (
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
        min_size=1,
        max_size=40,
    )
    .map(str.strip)
    .filter(lambda s: bool(s) and not s.startswith("Negative prompt:"))
)


@settings(max_examples=200, deadline=None)
@given(
    prompt_lines=st.lists(line, min_size=1, max_size=3),
    negative=st.one_of(st.none(), line),
    seed=st.integers(0, 2**63 - 1),
    steps=st.integers(1, 1000),
    sampler=line,
)
def test_format_then_parse_round_trips(
    prompt_lines: list[str], negative: str | None, seed: int, steps: int, sampler: str
) -> None:
    prompt = "\n".join(prompt_lines)
    text = format_infotext(
        prompt, negative, {"Steps": steps, "Sampler": sampler, "Seed": seed, "Size": "64x32"}
    )
    info = parse_infotext(text)
    assert info.prompt == prompt
    assert info.negative_prompt == negative
    assert (info.seed, info.steps, info.sampler) == (seed, steps, sampler)
    assert (info.width, info.height) == (64, 32)


# ------------------------------------------------------------------ embedding
IMAGES = [
    ("PNG", "RGB", {}),
    ("PNG", "RGBA", {}),
    ("JPEG", "RGB", {"quality": 90}),
    ("WEBP", "RGB", {"quality": 80}),
    ("WEBP", "RGBA", {"quality": 80}),
    ("WEBP", "RGBA", {"lossless": True}),
]


@pytest.mark.parametrize(("fmt", "mode", "options"), IMAGES)
def test_embed_round_trips_and_keeps_pixels(
    fmt: str, mode: str, options: dict[str, object]
) -> None:
    img = Image.effect_noise((48, 32), 40).convert(mode)
    data = encode(img, fmt, **options)
    info = inspect_image(data)
    record = a_record("a héron, «at dawn»")
    out = embed_metadata(data, info, record)

    assert inspect_image(out) == info  # still a valid image of the same kind
    with Image.open(io.BytesIO(data)) as a, Image.open(io.BytesIO(out)) as b:
        assert a.mode == b.mode
        assert ImageChops.difference(a.convert("RGBA"), b.convert("RGBA")).getbbox() is None
    got = read_generation_info(out)
    assert got.source == "nbbatch"
    assert got.prompt == "a héron, «at dawn»"
    assert got.negative_prompt == "blurry, lowres"
    assert (got.seed, got.steps, got.cfg_scale, got.sampler) == (42, 30, 6.5, "DPM++ 2M")
    assert got.model == "sdxl-base"
    assert (got.width, got.height) == (48, 32)
    assert got.record is not None
    assert got.record["task_id"] == record["task_id"]
    assert got.record["parent_id"] == "parent123456"
    assert got.record["batch_id"] == "batch0000001"
    assert got.record["info"] == {"x": 1}


@pytest.mark.parametrize(("fmt", "mode", "options"), IMAGES)
def test_infotext_alone_is_readable_like_a1111_reads_it(
    fmt: str, mode: str, options: dict[str, object]
) -> None:
    data = encode(Image.new(mode, (20, 10)), fmt, **options)
    out = embed_metadata(data, inspect_image(data), a_record())
    with Image.open(io.BytesIO(out)) as img:
        if fmt == "PNG":
            text = img.info["parameters"]  # what A1111's PNG Info looks at
        else:
            raw = img.getexif().get_ifd(0x8769)[0x9286]
            assert raw.startswith(b"UNICODE\x00")
            text = raw[8:].decode("utf-16-be")
    parsed = parse_infotext(text)
    assert parsed.prompt == "a red fox, in snow"
    assert parsed.negative_prompt == "blurry, lowres"
    assert (parsed.seed, parsed.steps, parsed.sampler) == (42, 30, "DPM++ 2M")
    assert (parsed.width, parsed.height) == (20, 10)
    assert parsed.provider == "demo"


def test_png_chunks_go_before_the_image_data_and_replace_stale_ones() -> None:
    data = encode(Image.new("RGB", (8, 8)), "PNG")
    info = inspect_image(data)
    once = embed_metadata(data, info, a_record("first"))
    twice = embed_metadata(once, info, a_record("second"))
    chunks = png_text_chunks(twice)
    assert sorted(k for _, k in chunks) == [b"nbbatch", b"parameters"]
    assert twice.index(b"tEXt") < twice.index(b"IDAT")
    assert read_generation_info(twice).prompt == "second"


def test_non_latin_prompt_goes_in_an_itxt_chunk() -> None:
    data = encode(Image.new("RGB", (8, 8)), "PNG")
    out = embed_metadata(data, inspect_image(data), a_record("富士山と桜"))
    assert (b"iTXt", b"parameters") in png_text_chunks(out)
    with Image.open(io.BytesIO(out)) as img:
        assert img.info["parameters"].startswith("富士山と桜")


def test_jpeg_keeps_existing_exif_and_jfif() -> None:
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    data = encode(Image.new("RGB", (16, 16)), "JPEG", exif=exif.tobytes())
    out = embed_metadata(data, inspect_image(data), a_record())
    with Image.open(io.BytesIO(out)) as img:
        assert img.getexif()[0x010F] == "CameraMaker"
    assert read_generation_info(out).seed == 42


def test_gif_is_left_unchanged() -> None:
    data = encode(Image.new("P", (8, 8)), "GIF")
    assert embed_metadata(data, inspect_image(data), a_record()) == data


def test_damaged_container_is_returned_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    data = encode(Image.new("RGB", (8, 8)), "PNG")
    info = inspect_image(data)
    broken = data[:-12]  # no IEND
    assert embed_metadata(broken, info, a_record()) == broken
    assert "could not embed" in caplog.text


# ------------------------------------------------------------------ other tools
def png_with_texts(texts: dict[str, str]) -> bytes:
    meta = PngImagePlugin.PngInfo()
    for k, v in texts.items():
        meta.add_text(k, v, zip=len(v) > 200)
    return encode(Image.new("RGB", (8, 8)), "PNG", pnginfo=meta)


def test_reads_an_a1111_png() -> None:
    info = read_generation_info(png_with_texts({"parameters": DOCUMENTED}))
    assert info.source == "a1111"
    assert info.seed == 1234567890 and info.prompt.startswith("masterpiece")


COMFY_PROMPT = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
    "10": {
        "class_type": "LoraLoader",
        "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "x.safetensors"},
    },
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 832, "height": 1216, "batch_size": 1},
    },
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "a castle, at night", "clip": ["10", 1]},
    },
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["10", 1]}},
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 987654321,
            "steps": 28,
            "cfg": 4.5,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
            "model": ["10", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
}


def test_reads_a_comfyui_png_prompt_graph() -> None:
    data = png_with_texts({"prompt": json.dumps(COMFY_PROMPT), "workflow": "{}"})
    info = read_generation_info(data)
    assert info.source == "comfyui"
    assert info.prompt == "a castle, at night"
    assert info.negative_prompt == "blurry"
    assert (info.seed, info.steps, info.cfg_scale, info.sampler) == (987654321, 28, 4.5, "euler")
    assert info.model == "sdxl.safetensors"  # found through the LoRA loader
    assert (info.width, info.height) == (832, 1216)
    assert info.extras["scheduler"] == "normal"


def test_reads_a_comfyui_workflow_when_there_is_no_prompt_graph() -> None:
    workflow = {
        "nodes": [
            {"id": 6, "type": "CLIPTextEncode", "widgets_values": ["sunset over sea"]},
            {"id": 7, "type": "CLIPTextEncode", "widgets_values": ["ugly"]},
            {
                "id": 3,
                "type": "KSampler",
                "inputs": [
                    {"name": "model", "link": 1},
                    {"name": "positive", "link": 4},
                    {"name": "negative", "link": 6},
                ],
                "widgets_values": [1234, "randomize", 20, 8, "dpmpp_2m", "karras", 1],
            },
        ],
        "links": [[4, 6, 0, 3, 1, "CONDITIONING"], [6, 7, 0, 3, 2, "CONDITIONING"]],
    }
    info = read_generation_info(png_with_texts({"workflow": json.dumps(workflow)}))
    assert info.source == "comfyui"
    assert (info.prompt, info.negative_prompt) == ("sunset over sea", "ugly")
    assert (info.seed, info.steps, info.cfg_scale, info.sampler) == (1234, 20, 8.0, "dpmpp_2m")


SWARM = {
    "sui_image_params": {
        "prompt": "a lighthouse, stormy",
        "negativeprompt": "people",
        "model": "juggernautXL",
        "seed": 555,
        "steps": 35,
        "cfgscale": 6,
        "width": 1024,
        "height": 768,
        "sampler": "dpmpp_3m_sde",
        "swarm_version": "0.9.5",
    },
    "sui_extra_data": {"date": "2025-01-01", "original_prompt": "a <random:lighthouse|castle>"},
}


def test_reads_swarmui_json_from_a_png_parameters_chunk() -> None:
    info = read_generation_info(png_with_texts({"parameters": json.dumps(SWARM)}))
    assert info.source == "swarmui"
    assert (info.prompt, info.negative_prompt, info.model) == (
        "a lighthouse, stormy",
        "people",
        "juggernautXL",
    )
    assert (info.seed, info.steps, info.cfg_scale) == (555, 35, 6.0)
    assert (info.width, info.height) == (1024, 768)
    assert info.extras["swarm_version"] == "0.9.5"


def test_reads_swarmui_json_from_a_jpeg_user_comment() -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + json.dumps(SWARM).encode("utf-16-be")
    data = encode(Image.new("RGB", (8, 8)), "JPEG", exif=exif.tobytes())
    info = read_generation_info(data)
    assert info.source == "swarmui" and info.seed == 555


def test_reads_little_endian_and_ascii_user_comments() -> None:
    for raw in (
        b"UNICODE\x00" + DOCUMENTED.encode("utf-16-le"),
        b"ASCII\x00\x00\x00" + DOCUMENTED.encode("ascii"),
    ):
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9286] = raw
        data = encode(Image.new("RGB", (8, 8)), "JPEG", exif=exif.tobytes())
        assert read_generation_info(data).seed == 1234567890


def test_an_image_without_metadata_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    info = read_generation_info(path)
    assert not info and info.source == "none"
    with pytest.raises(ImageError, match="no prompt"):
        task_from_image(path)


def test_non_images_are_refused() -> None:
    with pytest.raises(ImageRejectedError) as err:
        read_generation_info(b"%PDF-1.7 hello")
    assert err.value.reason == "format"


def test_compressed_text_bombs_are_not_inflated() -> None:
    huge = zlib.compress(b"a" * (64 * 1024 * 1024), 9)
    chunk_body = b"parameters\x00\x00" + huge
    crc = zlib.crc32(b"zTXt" + chunk_body) & 0xFFFFFFFF
    chunk = struct.pack(">I", len(chunk_body)) + b"zTXt" + chunk_body + struct.pack(">I", crc)
    base = encode(Image.new("RGB", (8, 8)), "PNG")
    data = base[:33] + chunk + base[33:]
    assert read_generation_info(data).prompt is None  # skipped, not expanded to 64 MB


@settings(max_examples=300, deadline=None)
@given(
    fmt=st.sampled_from(["PNG", "JPEG", "WEBP"]),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.integers(0, 3000),
)
def test_damaged_metadata_never_escapes_as_another_error(
    fmt: str, flips: list[tuple[int, int]], cut: int
) -> None:
    data = encode(Image.new("RGB", (16, 16)), fmt)
    buf = bytearray(embed_metadata(data, inspect_image(data), a_record()))
    for pos, value in flips:
        if pos < len(buf):
            buf[pos] = value
    damaged = bytes(buf[: max(1, len(buf) - cut)])
    try:
        info = read_generation_info(damaged)
    except ImageRejectedError as exc:
        assert exc.reason in {"corrupt", "format"}
    else:
        assert info.source in {"nbbatch", "a1111", "none"}


# ------------------------------------------------------------------ through a batch run
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_a_demo_batch_writes_files_that_read_back_to_their_task(tmp_path: Path, fmt: str) -> None:
    ws = Workspace(tmp_path / "ws")
    prompts = ["a red car, parked", "a blue\nbicycle"]
    batch = Batch.create(
        prompts, workspace=ws, params=Params(seed=11, negative_prompt="rain", steps=12)
    )
    batch.run_sync(DemoProvider(format=fmt))
    assert batch.status == "succeeded"
    for task in batch.tasks:
        (image,) = task.images
        assert image.format == fmt
        info = read_generation_info(image.path)
        assert info.prompt == task.prompt
        assert info.seed == image.seed == 11
        assert info.record is not None
        assert info.record["task_id"] == task.id
        assert info.record["batch_id"] == batch.id
        assert info.record["provider"] == "demo"
        if fmt == "PNG":
            with Image.open(image.path) as img:
                parsed = parse_infotext(img.info["parameters"])
            assert (parsed.prompt, parsed.seed) == (task.prompt, 11)
            assert parsed.negative_prompt == "rain"
    ws.close()


def test_remix_from_file_keeps_the_parameters_and_the_lineage(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    batch = Batch.create(
        ["a fox"], workspace=ws, params=Params(seed=3, size="320x200", cfg_scale=5.0)
    )
    batch.run_sync("demo")
    original = batch.tasks[0]
    remix = task_from_image(original.images[0].path)
    assert remix.prompt == "a fox"
    assert remix.params.seed == 3
    assert remix.params.size == "320x200"
    assert remix.params.cfg_scale == 5.0
    assert remix.parent_id == original.id
    assert remix.provider is None  # not pinned: it runs on the batch's provider
    assert read_generation_info(original.images[0].path).provider == "demo"
    assert task_from_image(original.images[0].path, keep_seed=False).params.seed is None
    again = Batch.create([remix], workspace=ws)
    again.run_sync("demo")
    assert again.tasks[0].images[0].seed == 3
    ws.close()


def test_remix_from_a_foreign_file_drops_out_of_range_values() -> None:
    text = "a cat\nSteps: 5000, Seed: 12, Size: 512x512, Denoising strength: 3"
    task = task_from_image(png_with_texts({"parameters": text}))
    assert task.params.steps is None  # Params allows 1..1000
    assert task.params.strength is None
    assert task.params.seed == 12 and task.params.size == "512x512"
    assert task.parent_id is None


def test_a_key_that_leaked_into_provider_info_is_not_embedded() -> None:
    from nbbatch.core._secrets import Secret

    sentinel = "test-key-SENTINEL-metadata-7f3a9c"
    Secret(sentinel)  # registers the value as a known secret
    data = encode(Image.new("RGB", (8, 8)), "PNG")
    record = a_record(info={"debug_url": f"https://x.invalid/?key={sentinel}"})
    out = embed_metadata(data, inspect_image(data), record)
    assert sentinel.encode() not in out
    assert read_generation_info(out).record["info"]["debug_url"].endswith("***")


def test_comfyui_conditioning_through_a_controlnet_node_keeps_its_side() -> None:
    graph = json.loads(json.dumps(COMFY_PROMPT))
    graph["20"] = {
        "class_type": "ControlNetApplyAdvanced",
        "inputs": {"positive": ["6", 0], "negative": ["7", 0], "strength": 0.8},
    }
    graph["3"]["inputs"]["positive"] = ["20", 0]
    graph["3"]["inputs"]["negative"] = ["20", 1]
    info = read_generation_info(png_with_texts({"prompt": json.dumps(graph)}))
    assert (info.prompt, info.negative_prompt) == ("a castle, at night", "blurry")


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_animations_keep_every_frame(fmt: str) -> None:
    frames = [Image.new("RGBA", (30, 20), (i * 60, 0, 0, 255)) for i in range(4)]
    buf = io.BytesIO()
    extra = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:], duration=100, **extra)
    data = buf.getvalue()
    out = embed_metadata(data, inspect_image(data), a_record("animated"))
    with Image.open(io.BytesIO(out)) as img:
        assert img.n_frames == 4
        img.seek(3)
        assert img.convert("RGBA").getpixel((1, 1)) == (180, 0, 0, 255)
    assert read_generation_info(out).prompt == "animated"


def test_reads_invokeai_metadata() -> None:
    doc = {
        "positive_prompt": "a koi pond, watercolor",
        "negative_prompt": "photo",
        "seed": 77,
        "steps": 30,
        "cfg_scale": 7.5,
        "scheduler": "dpmpp_2m",
        "width": 768,
        "height": 512,
        "model": {"name": "dreamshaper-8", "base": "sd-1"},
        "generation_mode": "txt2img",
    }
    info = read_generation_info(png_with_texts({"invokeai_metadata": json.dumps(doc)}))
    assert info.source == "invokeai"
    assert (info.prompt, info.negative_prompt) == ("a koi pond, watercolor", "photo")
    assert (info.seed, info.steps, info.cfg_scale, info.sampler) == (77, 30, 7.5, "dpmpp_2m")
    assert (info.model, info.width, info.height) == ("dreamshaper-8", 768, 512)
    assert info.extras["generation_mode"] == "txt2img"


# -- hostile input in embedded text --------------------------------------------
# Defect 6: a NUL in a prompt reached the PNG text chunks.


def test_no_nul_reaches_the_png_text_chunks(workspace: Workspace) -> None:
    batch = Batch.create(
        [Task("a\x00fox", params=Params(size="64x64", negative_prompt="b\x00lur"))],
        workspace=workspace,
    )
    batch.run_sync("demo")
    with Image.open(batch.images[0].path) as im:
        chunks = dict(im.text)  # type: ignore[attr-defined]
    assert chunks and not any("\x00" in v for v in chunks.values())
    assert "afox" in chunks["parameters"]
