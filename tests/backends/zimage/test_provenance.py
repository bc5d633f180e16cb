"""Provenance: PNG text chunks + JSON beside the image, atomic, never overwriting."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from zit_agent.backends.provenance import (
    RECORD_KEYS,
    ImageRecord,
    a1111_parameters,
    png_text,
    read_record,
    save_image,
    save_rendered,
)

RECORD = {
    "idea": "a red fox",
    "text": "<|im_start|>user\na red fox<|im_end|>\n<|im_start|>assistant\n",
    "token_count": 12,
    "seed": 42,
    "width": 64,
    "height": 48,
    "steps": 8,
    "guidance": 0.0,
    "sampler": "euler",
    "model": "Tongyi-MAI/Z-Image-Turbo",
    "lora": "/loras/ink, style.safetensors",
    "lora_strength": 0.8,
    "noise": {"strength": 0.3, "fraction": 0.5, "steps_share": 0.2, "seed": 0},
}


def image() -> Image.Image:
    return Image.new("RGB", (64, 48), (200, 30, 10))


def test_record_round_trips_through_the_png_and_the_json_beside_it(tmp_path):
    path = save_image(image(), ImageRecord.model_validate(RECORD), tmp_path, "fox")
    assert path == tmp_path / "fox.png"
    assert read_record(path) == RECORD
    assert json.loads(path.with_suffix(".json").read_text()) == RECORD
    with Image.open(path) as img:
        assert img.size == (64, 48)
        assert img.text["parameters"] == a1111_parameters(RECORD)


def test_a1111_parameters_show_prompt_and_settings():
    text = a1111_parameters(RECORD)
    prompt, settings = text.rsplit("\n", 1)
    assert prompt == RECORD["idea"]  # no readable prompt in this record: the idea, never markup
    assert "Steps: 8" in settings and "Seed: 42" in settings and "Size: 64x48" in settings
    assert "Sampler: Euler," in settings and "CFG scale: 1.0" in settings
    assert 'Lora: "ink, style.safetensors:0.8"' in settings  # commas quoted, as A1111 does


def test_names_are_never_reused(tmp_path):
    first = save_image(image(), ImageRecord.model_validate(RECORD), tmp_path, "fox")
    (tmp_path / "fox-1.json").write_text("{}")  # a stray JSON also reserves its name
    second = save_image(
        image(), ImageRecord.model_validate({**RECORD, "seed": 43}), tmp_path, "fox"
    )
    assert (first.name, second.name) == ("fox.png", "fox-2.png")
    assert read_record(first)["seed"] == 42


def test_an_interrupted_write_leaves_no_partial_png(tmp_path, monkeypatch):
    def fail_halfway(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG\r\n\x1a\n partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", fail_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_image(image(), ImageRecord.model_validate(RECORD), tmp_path, "fox")
    assert list(tmp_path.iterdir()) == []


def test_read_record_is_none_for_other_files(tmp_path):
    plain = tmp_path / "plain.png"
    image().save(plain)
    (tmp_path / "notes.txt").write_text("hello")
    assert read_record(plain) is None
    assert read_record(tmp_path / "notes.txt") is None
    assert read_record(tmp_path / "missing.png") is None


def _chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_text_chunks_are_read_in_every_form_without_decoding_pixels(tmp_path):
    """tEXt, zTXt and iTXt (plain or compressed), before or after the image data, the same as
    Pillow reads them; and from a PNG whose pixel data is broken (so nothing decoded it)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("plain", "latin-1 text: caf\xe9")
    info.add_text("squeezed", "zip " * 50, zip=True)
    info.add_itxt("intl", "Ünïcödé 画像", lang="de", tkey="Übersetzt")
    info.add_itxt("intl-zip", "Ünïcödé " * 40, zip=True)
    path = tmp_path / "chunks.png"
    image().save(path, pnginfo=info)
    with Image.open(path) as opened:
        expected = dict(opened.text)
    assert {key: png_text(path, key) for key in expected} == expected
    assert png_text(path, "absent") is None

    data = path.read_bytes()
    end = data.rindex(b"IEND") - 4  # the IEND chunk's length field
    late = data[:end] + _chunk(b"iTXt", b"zit\0\0\0\0\0" + b'{"idea": "late"}') + data[end:]
    idat = late.index(b"IDAT") + 4
    size = int.from_bytes(late[idat - 8 : idat - 4], "big")
    broken = late[:idat] + bytes(size) + late[idat + size :]  # the pixel data zeroed
    (tmp_path / "broken.png").write_bytes(broken)
    assert read_record(tmp_path / "broken.png") == {"idea": "late"}
    with pytest.raises(OSError), Image.open(tmp_path / "broken.png") as opened:
        opened.load()


def test_rendered_images_carry_the_full_record(backend, plain_ids, small_options, tmp_path):
    rendered = backend.render(plain_ids, [3, 4], small_options)
    paths = save_rendered(rendered, tmp_path, idea="a red fox in the snow", prefix="run")
    assert [p.name for p in paths] == [
        "run-a-red-fox-in-the-snow-s3.png",
        "run-a-red-fox-in-the-snow-s4.png",
    ]
    record = read_record(paths[1])
    assert set(RECORD_KEYS) <= set(record)
    assert record["idea"] == "a red fox in the snow"
    assert record["seed"] == 4
    assert record["token_count"] == len(plain_ids)
    assert record["text"].startswith("<|im_start|>user\na red fox in the snow<|im_end|>")
    assert (record["steps"], record["guidance"], record["shift"], record["sampler"]) == (
        2,
        0.0,
        3.0,
        "euler",
    )
    assert record["versions"]["diffusers"]


def test_token_ids_pack_compactly_and_round_trip(qwen_tokenizer):
    from zit_agent.backends.provenance import decode_ids, encode_ids

    text = (  # varied text: repeated text would compress far better
        "A red fox curled up in deep snow at dusk, soft blue light, 35 mm photo. Behind it a "
        "line of birches, their bark peeling; a frozen creek bends towards a wooden footbridge "
        "where two children in yellow coats throw pebbles. Smoke rises from a farmhouse chimney, "
        "and the sky shades from violet to a pale, cold green above the far hills."
    )
    ids = [151644, 872, 198, 0, 151935, *qwen_tokenizer.encode_text(text)]
    packed = encode_ids(ids)
    assert decode_ids(packed) == ids
    assert len(json.dumps(packed)) < len(json.dumps(ids))  # 512 ids of prose: about half


def test_rendered_records_hold_the_exact_ids_and_a_readable_prompt(
    backend, plain_ids, small_options, tmp_path
):
    from zit_agent.backends.provenance import record_token_ids, render_request

    rendered = backend.render(plain_ids, [3], small_options)
    path = save_rendered(rendered, tmp_path, idea="a red fox in the snow")[0]
    for record in (read_record(path), json.loads(path.with_suffix(".json").read_text())):
        assert record_token_ids(record) == plain_ids
        assert record["prompt"] == "a red fox in the snow"
    request = render_request(read_record(path))
    assert (request.seed, request.options) == (3, small_options.model_copy(update={"shift": 3.0}))
    assert request.model == backend.model_id and request.dtype == "fp32"


def parsed(path):
    """The PNG as a third-party reader of A1111 metadata sees it."""
    from sd_parsers import ParserManager

    info = ParserManager().parse(str(path))
    assert info is not None and info.generator.value == "AUTOMATIC1111"
    (sampler,) = info.samplers
    return sampler


def test_a_third_party_parser_reads_a_readable_prompt_and_a1111_sampler_names(
    backend, qwen_tokenizer, small_options, tmp_path
):
    from zit_agent.sequence import ChatSequence, assemble

    seq = ChatSequence.think(
        "a fox", "Plan: snow, dusk.", "A red fox curled up in deep snow at dusk."
    )
    ids = assemble(seq, qwen_tokenizer).ids
    negative = assemble(ChatSequence.plain("blurry, low detail"), qwen_tokenizer).ids
    options = small_options.model_copy(
        update={"sampler": "euler_a", "guidance": 2.0, "negative_ids": negative}
    )
    path = save_rendered(backend.render(ids, [8], options), tmp_path, idea="a fox")[0]
    sampler = parsed(path)
    assert sampler.name == "Euler a"
    assert [p.value for p in sampler.prompts] == ["A red fox curled up in deep snow at dusk."]
    assert [p.value for p in sampler.negative_prompts] == ["blurry, low detail"]
    assert sampler.parameters["cfg_scale"] == "3.0"  # diffusers' 2.0 is A1111's 3.0
    assert sampler.parameters["seed"] == "8" and sampler.parameters["steps"] == "2"
    assert "<|im_start|>" not in Image.open(path).text["parameters"]


@pytest.mark.parametrize(
    ("name", "a1111"), [("euler", "Euler"), ("lcm", "LCM"), ("unipc", "UniPC")]
)
def test_every_sampler_has_its_a1111_name(tmp_path, name, a1111):
    path = save_image(
        image(), ImageRecord.model_validate({**RECORD, "sampler": name}), tmp_path, "fox"
    )
    assert parsed(path).name == a1111


def test_an_output_folder_that_is_a_file_is_a_user_error(tmp_path):
    from zit_agent.errors import UserError

    blocker = tmp_path / "out"
    blocker.write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        save_image(image(), ImageRecord.model_validate(RECORD), blocker, "fox")
    with pytest.raises(UserError, match=f"cannot be made: {blocker} is a file"):
        save_image(image(), ImageRecord.model_validate(RECORD), blocker / "sub", "fox")


def test_a_full_disk_leaves_no_partial_files(tmp_path):
    """A file-size limit stands in for a full disk: the write fails half way."""
    import subprocess
    import sys

    code = (
        "import resource, sys\n"
        "import numpy as np\n"
        "from PIL import Image\n"
        "from zit_agent.backends.provenance import ImageRecord, save_image\n"
        "from zit_agent.errors import UserError\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))\n"
        "noise = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)\n"
        "try:\n"
        "    save_image(Image.fromarray(noise), ImageRecord(seed=1), sys.argv[1], 'big')\n"
        "except UserError as err:\n"
        "    print(err.one_line())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert "cannot write the image to" in out.stdout and "too large" in out.stdout, out.stderr
    assert list(tmp_path.iterdir()) == []
