"""Issue 24's hostile battery: each input that hung, wrote a wrong image or ended as an internal
error, now one line with its kind's exit code. Tests are named after their input; the classes of
fault are bounds on every number, a validated record, and foreign file errors mapped to a kind."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
from PIL import Image, PngImagePlugin

from tests.cli_helpers import run_zit as zit
from zit_agent.backends.provenance import encode_ids

ONE_ID = encode_ids([1])


def only_error_line(err: str, message: str) -> bool:
    return err.count("\n") == 1 and err.startswith("zit: error:") and message in err


def png_with_record(tmp_path, text: str | None, name: str = "hostile.png"):
    """A 16x16 PNG whose `zit` iTXt chunk holds `text` as it is (JSON or not)."""
    path = tmp_path / name
    info = PngImagePlugin.PngInfo()
    if text is not None:
        info.add_itxt("zit", text)
    Image.new("RGB", (16, 16)).save(path, pnginfo=info)
    return path


def with_chunk(path, kind: bytes, data: bytes, before: bytes = b"IEND"):
    """`path` with one more chunk just before the first `before` chunk."""
    raw = path.read_bytes()
    end = raw.index(before) - 4
    chunk = struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(raw[:end] + chunk + raw[end:])
    return path


def record(**fields) -> str:
    return json.dumps({"seed": 1, "token_ids": ONE_ID, **fields})


# -- a record is validated before anything renders ------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (record(steps=1000000), "the record's steps is invalid"),
        (record(steps=0), "the record's steps is invalid"),
        (record(guidance=float("inf")),  # json.dumps writes Infinity
         "the record's guidance is invalid: Input should be a finite number"),
        (record(guidance=1e308), "the record's guidance is invalid"),
        (record(guidance=float("nan")),
         "the record's guidance is invalid"),
        (record(noise={"strength": float("inf")}),
         "the record's noise.strength is invalid"),
        (record(noise={"strength": 1e308}), "the record's noise.strength is invalid"),
        (record(noise={"strength": 0.5, "seed": 2**70}), "the record's noise.seed is invalid"),
        (record(noise={"strength": 0.5, "steps_share": 0}), "noise.steps_share is invalid"),
        (record(noise=[1, 2]), "the record's noise is not a mapping"),
        (record(seed=-5), "the record's seed is invalid"),
        (record(seed=2**64), "the record's seed is invalid"),
        (record(layer=99999), "the record's layer is invalid"),
        (record(steps=True), "the record's steps is not a number"),
        (record(idea=5), "the record's idea is not text"),
        (record(text=["a", "cat"]), "the record's text is not text"),
        ("[" * 100_000 + "]" * 100_000, "has no zit record"),
    ],
    ids=[
        "steps-1000000", "steps-0", "guidance-Infinity", "guidance-1e308", "guidance-NaN",
        "noise-Infinity", "noise-1e308", "noise-seed-2^70", "noise-steps-share-0", "noise-a-list",
        "seed-minus-5", "seed-2^64", "layer-99999", "steps-true", "idea-5", "text-a-list",
        "json-100k-deep",
    ],
)  # fmt: skip
def test_rerender_of_a_hostile_record_is_one_line_exit_2(capsys, tmp_path, text, message):
    code, out, err = zit(capsys, "rerender", str(png_with_record(tmp_path, text)))
    assert code == 2 and out == ""
    assert only_error_line(err, message), err


def test_rerender_of_an_empty_itxt_zit_chunk_is_one_line(capsys, tmp_path):
    path = with_chunk(png_with_record(tmp_path, None), b"iTXt", b"zit\0")
    code, _, err = zit(capsys, "rerender", str(path))
    assert code == 2 and only_error_line(err, "has no zit record"), err


def test_read_record_of_an_empty_itxt_zit_chunk_and_100k_deep_json_is_none(tmp_path):
    from zit_agent.backends.provenance import read_record

    empty = with_chunk(png_with_record(tmp_path, None, "empty.png"), b"iTXt", b"zit\0")
    deep = png_with_record(tmp_path, "[" * 100_000 + "]" * 100_000, "deep.png")
    assert read_record(empty) is None and read_record(deep) is None


def test_rerender_seed_minus_1_is_refused(capsys, tmp_path):
    code, _, err = zit(capsys, "rerender", str(png_with_record(tmp_path, record())), "--seed", "-1")
    assert code == 2 and "--seed" in err and err.count("\n") == 1, err


# -- options: bounds the noise settings and the machine need --------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--noise", "0.5", "--noise-steps", "0"], "bad value for --noise-steps"),
        (["--guidance", "1e308"], "bad value for --guidance"),
        (["--noise", "Infinity"], "bad value for --noise"),
        (["--guidance", "NaN"], "bad value for --guidance"),
        (["--seed", str(2**64)], "bad value for --seed"),
        (["--seed", "-1"], "bad value for --seed"),
        (["--noise", "0.5", "--noise-seed", str(2**70)], "bad value for --noise-seed"),
    ],
    ids=["noise-steps-0", "guidance-1e308", "noise-Infinity", "guidance-NaN", "seed-2^64",
         "seed-minus-1", "noise-seed-2^70"],
)  # fmt: skip
def test_generate_with_an_out_of_bounds_number_is_one_line(capsys, args, message):
    code, out, err = zit(capsys, "generate", "a cat", "--writer", "none", "--backend", "sketch",
                         "--no-ruts", *args)  # fmt: skip
    assert code == 2 and out == "" and only_error_line(err, message), err


def test_threads_1024_on_2_cpus_is_refused(monkeypatch):
    from zit_agent.backends.writers import llama
    from zit_agent.errors import UserError

    monkeypatch.setattr(llama.os, "cpu_count", lambda: 2)
    with pytest.raises(UserError, match="1024 writer threads is more than this machine's 2 CPUs"):
        llama.writer_threads(1024)
    assert llama.writer_threads(2).generation == 2


@pytest.mark.parametrize("kind", [b"zTXt", b"iCCP"])
def test_ruts_of_a_chunk_inflating_past_pillows_limit_is_one_line(capsys, tmp_path, kind):
    """A zTXt record or an iCCP profile of 100 MB of zeros, compressed to about 100 kB."""
    bomb = zlib.compress(bytes(100 << 20))
    name = b"comment" if kind == b"zTXt" else b"icc"
    path = with_chunk(png_with_record(tmp_path, None), kind, name + b"\0\0" + bomb, b"IDAT")
    code, _, err = zit(capsys, "ruts", str(path), str(path))
    assert code == 2 and only_error_line(err, "is not a readable image (ValueError)"), err


def test_ruts_of_a_png_just_past_pillows_pixel_limit_is_refused(capsys, tmp_path):
    """Pillow only warns between its limit and twice it; zit refuses from the limit on."""
    path = tmp_path / "big.png"
    Image.new("1", (10000, 10000)).save(path)  # 100 million pixels: over 89,478,485
    code, _, err = zit(capsys, "ruts", str(path), str(path))
    assert code == 2 and only_error_line(err, "too large to judge"), err


# -- safetensors files: every fault of the format is one line, exit 2 -----------------------------
def safetensors_file(path, header: dict | bytes, data: bytes = b""):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
    return path


F32_4 = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
BAD_HEADERS = {
    "cut-short": ({"w.weight": F32_4}, bytes(8), "outside the file's 8 data bytes"),
    "json-100k-deep": (b"[" * 100_000 + b"]" * 100_000, b"", "nested too deeply"),
    "duplicate-keys": (b'{"w": {}, "w": {}}', b"", "names 'w' twice"),
    "offsets-past-the-end": (
        {"w.weight": {**F32_4, "data_offsets": [0, 1 << 40]}}, bytes(16), "outside the file's"),
    "offsets-negative": (
        {"w.weight": {**F32_4, "data_offsets": [-16, 0]}}, bytes(16), "outside the file's"),
    "shape-1e9-by-1e9": ({"w.weight": {**F32_4, "shape": [1e9, 1e9]}}, bytes(16), "bad shape"),
    "shape-big": ({"w.weight": {**F32_4, "shape": "big"}}, bytes(16), "bad shape 'big'"),
    "shape-not-matching-offsets": (
        {"w.weight": {**F32_4, "shape": [10**9, 10**9]}}, bytes(16), "takes 4000000000000000000"),
    "no-dtype": ({"w.weight": {"shape": [4], "data_offsets": [0, 16]}}, bytes(16), "no known dtype"),
    "metadata-a-list": ({"__metadata__": [1]}, b"", "__metadata__ is not a map"),
    "entry-a-number": ({"w.weight": 5}, b"", "is not described by an object"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_HEADERS)
def test_a_single_file_with_a_bad_safetensors_header_is_refused(tmp_path, case):
    from zit_agent.backends.single_file import inspect_file
    from zit_agent.errors import UserError

    header, data, message = BAD_HEADERS[case]
    path = safetensors_file(tmp_path / "dit.safetensors", header, data)
    with pytest.raises(UserError, match="is not a readable safetensors file") as err:
        inspect_file(path, "transformer")
    assert message in str(err.value)


@pytest.mark.parametrize("case", ["cut-short", "json-100k-deep", "duplicate-keys", "no-dtype"])
def test_generate_with_a_bad_lora_file_is_one_line(capsys, tmp_path, tiny_zimage_dir, case):
    header, data, message = BAD_HEADERS[case]
    lora = safetensors_file(tmp_path / "lora.safetensors", header, data)
    code, out, err = zit(capsys, "generate", "a cat", "--writer", "none", "--no-ruts",
                         "--image-model", str(tiny_zimage_dir), "--size", "64x64", "--steps", "1",
                         "--lora", str(lora))  # fmt: skip
    assert code == 2 and out == "" and only_error_line(err, message), err


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e30])
def test_a_lora_whose_weights_are_inf_nan_or_1e30_is_refused_on_load(tmp_path, value):
    import torch
    from safetensors.torch import save_file

    from zit_agent.backends.zimage import read_lora_file
    from zit_agent.errors import UserError

    path = tmp_path / "lora.safetensors"
    weight = torch.zeros(4, 4)
    weight[1, 2] = value
    save_file({"layers.0.attention.to_q.lora_A.weight": weight}, str(path))
    with pytest.raises(UserError, match="weights that are not finite or past 65504"):
        read_lora_file(path)


# -- damaged databases: one line naming the file; a full disk is exit 3 ---------------------------
def two_pngs(tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 32), (i * 90, 0, 0)).save(folder / f"{i}.png")
    return folder


def damage(path, how: str) -> None:
    import sqlite3

    from zit_agent.agent.history import HistoryStore

    if how == "foreign-tables":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE images (name TEXT)")
        db.execute("CREATE TABLE checkpoints (name TEXT)")
        db.commit()
        db.close()
        return
    HistoryStore(path).close()
    db = sqlite3.connect(path)
    if how == "user-version-minus-1":
        db.execute("PRAGMA user_version = -1")
    elif how == "user-version-current-tables-dropped":
        from zit_agent.agent.history import MIGRATIONS

        db.execute("DROP TABLE embeddings")
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")  # says up to date, is not
    db.commit()
    db.close()
    if how == "scrambled-pages":
        raw = bytearray(path.read_bytes())
        raw[4096:] = bytes((i * 131 + 7) % 256 for i in range(len(raw) - 4096))
        path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("foreign-tables", "is not zit's: it holds tables zit did not make (checkpoints, images)"),
        ("user-version-minus-1", "has a schema version of -1"),
        ("user-version-current-tables-dropped", "is not zit's: it has no embeddings table"),
        ("scrambled-pages", "is damaged"),
    ],
)
def test_ruts_with_a_damaged_history_sqlite_is_one_line(capsys, tmp_path, zit_home, how, message):
    zit_home.mkdir(parents=True, exist_ok=True)
    damage(zit_home / "history.sqlite", how)
    code, _, err = zit(capsys, "ruts", str(two_pngs(tmp_path)))
    assert code == 2 and only_error_line(err, message), err
    assert "history.sqlite" in err and "move it aside" in err


@pytest.mark.parametrize(
    ("how", "message"),
    [("foreign-tables", "is not zit's: its checkpoints table"), ("scrambled-pages", "damaged")],
)
def test_chat_show_with_a_damaged_sessions_sqlite_is_one_line(capsys, zit_home, how, message):
    zit_home.mkdir(parents=True, exist_ok=True)
    damage(zit_home / "sessions.sqlite", how)
    code, _, err = zit(capsys, "chat", "--session", "s", "--show")
    assert code == 2 and "sessions.sqlite" in err and only_error_line(err, message), err


def test_a_full_disk_under_sqlite_is_exit_3(capsys, tmp_path, monkeypatch):
    """SQLite says `database or disk is full` (no errno): the run ends as out of disk."""
    import sqlite3

    from zit_agent.agent import history

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(history.HistoryStore, "embed_missing", full)
    monkeypatch.setattr(history.HistoryStore, "add_image", full)
    code, _, err = zit(capsys, "ruts", str(two_pngs(tmp_path)))
    code2, _, err2 = zit(capsys, "generate", "a cat", "--writer", "none", "--backend", "sketch",
                         "-n", "2", "--max-attempts", "1", "--size", "64x64",
                         "--out", str(tmp_path / "out"))  # fmt: skip
    assert (code, code2) == (3, 3), err + err2
    assert only_error_line(err, "no space left for a database write: database or disk is full")
    last = err2.strip().splitlines()[-1]  # after the run's progress lines
    assert last.startswith("zit: error: no space left for a database write"), err2


# -- model folders and render sizes: checked before anything loads --------------------------------
def edited_model(tmp_path, tiny_zimage_dir, name: str, text: str):
    import shutil

    root = tmp_path / "model"
    shutil.copytree(tiny_zimage_dir, root)
    (root / name).write_text(text)
    return root


def with_config(tiny_zimage_dir, name: str, **changes) -> str:
    config = json.loads((tiny_zimage_dir / name).read_text())
    return json.dumps({**config, **changes})


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("model_index.json", "[]", "model_index.json is not a JSON object"),
        ("text_encoder/config.json", "[1, 2, 3]", "text_encoder/config.json is not a JSON object"),
        ("scheduler/scheduler_config.json", {"num_train_timesteps": 0},
         "num_train_timesteps is 0, not a whole number in 1..1000000"),
        ("transformer/config.json", {"n_layers": 1e9}, "n_layers is 1000000000.0, not a whole"),
        ("transformer/config.json", {"n_layers": 10**9}, "n_layers is 1000000000, not a whole"),
        ("transformer/config.json", {"axes_lens": "big"}, "axes_lens is not a short list"),
        ("vae/config.json", "[" * 100_000 + "]" * 100_000, "vae/config.json is not readable JSON"),
    ],
    ids=["model-index-a-list", "text-encoder-config-1-2-3", "num-train-timesteps-0",
         "n-layers-1e9", "n-layers-10^9", "axes-lens-big", "vae-config-100k-deep"],
)  # fmt: skip
def test_generate_with_a_damaged_model_folder_is_one_line(
    capsys, tmp_path, tiny_zimage_dir, name, change, message
):
    text = change if isinstance(change, str) else with_config(tiny_zimage_dir, name, **change)
    root = edited_model(tmp_path, tiny_zimage_dir, name, text)
    code, out, err = zit(capsys, "generate", "a cat", "--writer", "none", "--no-ruts",
                         "--image-model", str(root), "--size", "64x64", "--steps", "1")  # fmt: skip
    assert code == 2 and out == "" and only_error_line(err, message), err


def generate_tiny(capsys, tiny_zimage_dir, *args):
    return zit(capsys, "generate", "a cat", "--writer", "none", "--no-ruts", "--steps", "1",
               "--image-model", str(tiny_zimage_dir), *args)  # fmt: skip


def test_attention_bogus_is_refused_before_the_model_loads(capsys, tiny_zimage_dir, monkeypatch):
    from diffusers import ZImagePipeline

    def never(*args, **kwargs):
        raise AssertionError("the model loaded before the attention backend was checked")

    monkeypatch.setattr(ZImagePipeline, "from_pretrained", never)
    code, _, err = generate_tiny(capsys, tiny_zimage_dir, "--attention", "bogus")
    assert code == 2 and only_error_line(err, "unknown attention backend 'bogus'"), err


def test_size_4096x16_on_a_model_whose_positions_stop_at_64(capsys, tiny_zimage_dir):
    """The tiny DiT's axes_lens are [1536, 64, 64]: 64 patches of 16 px a side."""
    code, out, err = generate_tiny(capsys, tiny_zimage_dir, "--size", "4096x16")
    assert code == 2 and out == ""
    assert err.count("quality drops") <= 1, err  # the size warning once, not three times
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("zit: error: width 4096 is past this model's positions (64 patches of 16 px)")
    ), err


def test_rerender_of_a_record_of_4096_px_on_that_model(capsys, tmp_path, tiny_zimage_dir):
    path = png_with_record(tmp_path, record(width=4096, height=64, model=str(tiny_zimage_dir)))
    code, _, err = zit(capsys, "rerender", str(path))
    assert code == 2 and "width 4096 is past this model's positions" in err, err


def test_vram_7_on_a_cpu_machine_says_the_plan_is_not_this_machines(capsys, tiny_zimage_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, out, err = generate_tiny(capsys, tiny_zimage_dir, "--size", "64x64", "--vram", "7")
    assert code == 0, err
    assert "memory plan for 7 GB (a CUDA card: this run renders on the CPU" in err


# -- eval suites and run files: bounded before anything is built ---------------------------------
def suite_text(ideas: int, **extra) -> str:
    import yaml

    from tests.evals.helpers import sketch_suite

    listed = [{"id": f"i{n}", "text": f"a red fox {n}"} for n in range(ideas)]
    return yaml.safe_dump(sketch_suite(ideas=listed, **extra), sort_keys=False)


def test_eval_of_a_suite_of_20000_ideas_is_refused_in_seconds(capsys, tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(suite_text(20_000))
    code, _, err = zit(capsys, "eval", str(path), "--out", str(tmp_path / "run"))
    assert code == 2 and only_error_line(err, "field ideas: List should have at most 2000 items")


def test_eval_of_a_suite_whose_anchor_is_aliased_20000_times_is_refused(capsys, tmp_path):
    """A few hundred kB of YAML that expands to 20,000 x 200 nodes (gigabytes as objects)."""
    anchor = "locked: &many [" + ", ".join(["fox"] * 200) + "]\n"
    ideas = "".join(f"  - {{id: i{n}, text: a fox, locked: *many}}\n" for n in range(20_000))
    path = tmp_path / "bomb.yaml"
    path.write_text(f"name: bomb\nseeds: [0, 1]\nx: {{{anchor.strip()}}}\nideas:\n{ideas}"
                    "configs: {raw: {strategy: raw}}\n")  # fmt: skip
    code, _, err = zit(capsys, "eval", str(path), "--out", str(tmp_path / "run"))
    assert code == 2 and only_error_line(err, "the suite expands to over 200,000 YAML nodes"), err


def test_eval_of_a_suite_nested_100k_deep_is_one_line(capsys, tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = zit(capsys, "eval", str(path), "--out", str(tmp_path / "run"))
    assert code == 2 and err.count("\n") == 1 and "deep.yaml" in err, err


def test_eval_compare_of_a_summary_nested_100k_deep_is_one_line(capsys, tmp_path):
    for side in ("a", "b"):
        (tmp_path / side).mkdir()
        (tmp_path / side / "summary.json").write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = zit(capsys, "eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert code == 2 and only_error_line(err, "nested too deeply"), err


def test_a_journal_line_nested_100k_deep_reads_as_damaged(tmp_path):
    from zit_agent.evals.runner import _parse_json

    assert _parse_json(b"[" * 100_000 + b"]" * 100_000) is None


def test_run_jobs_of_2000_ideas_never_compares_jobs_pairwise(monkeypatch, tmp_path):
    """`j not in todo` compared jobs field by field: 20,000 ideas made no job in 180 s."""
    from zit_agent.evals import runner
    from zit_agent.evals.suite import parse_suite

    jobs = runner.plan(parse_suite(suite_text(2000)))

    def compared(self, other):
        raise AssertionError("jobs compared pairwise")

    monkeypatch.setattr(runner.Job, "__eq__", compared)
    started = []
    runner.run_jobs(jobs, jobs[1:], None, runner.RunFolder(tmp_path / "r"), True,
                    lambda todo, run, folder, progress: started.append(len(todo)))  # fmt: skip
    assert started == [len(jobs) - 1]


# -- concurrency ---------------------------------------------------------------------------------
def test_two_demos_building_the_tiny_model_at_once_both_succeed(tmp_path):
    """Two `zit demo` in one fresh ZIT_HOME: the second failed on the shared temporary folder
    `demo-models/tiny-zimage.tmp`. Each now builds in its own and the first rename wins."""
    import threading

    from diffusers import ZImagePipeline  # noqa: F401  (imported once: lazy imports race in threads)

    from zit_agent.agent.cli.demo import _build_once
    from zit_agent.backends.tiny.zimage import build_tiny_zimage

    target = tmp_path / "demo-models" / "tiny-zimage"
    both_building = threading.Barrier(2)
    errors = []

    def build(folder):
        both_building.wait(timeout=60)  # both processes are mid-build at once
        build_tiny_zimage(folder)

    def demo():
        try:
            _build_once(target, build)
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=demo) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == [] and (target / "model_index.json").is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == ["tiny-zimage"]  # no leftovers


def test_readable_text_of_1500_ids_without_im_start(qwen_tokenizer):
    """A record's ids without `<|im_start|>` (1,472-1,504 of them ended rerender as exit 70)."""
    from zit_agent.sequence import readable_text

    assert readable_text([9707] * 1500, qwen_tokenizer) == ""


@pytest.mark.parametrize("side", [10_000, 20_000])
def test_a_control_map_that_is_a_decompression_bomb_is_refused(tmp_path, side):
    from zit_agent.backends.controlnet import control_map
    from zit_agent.errors import UserError

    path = tmp_path / "map.png"
    Image.new("1", (side, side)).save(path)  # 100 or 400 million pixels, a small file
    with pytest.raises(UserError, match="control image .* is too large"):
        control_map(path, 64, 64, "none")


def test_generate_with_a_lora_whose_keys_match_nothing_is_one_line(
    capsys, tmp_path, tiny_zimage_dir
):
    import torch
    from safetensors.torch import save_file

    lora = tmp_path / "other.safetensors"
    save_file({"foo.bar.lora_A.weight": torch.zeros(4, 4), "foo.bar.lora_B.weight": torch.zeros(4, 4)},
              str(lora))  # fmt: skip
    code, out, err = generate_tiny(capsys, tiny_zimage_dir, "--size", "64x64", "--lora", str(lora))
    assert code == 2 and out == "" and only_error_line(err, "matches none of this model's layers")


@pytest.mark.parametrize(
    ("tensors", "keys"), [(2**62, 0), (0, 2**62)], ids=["tensors-2^62", "keys-2^62"]
)
def test_a_gguf_dit_with_counts_of_2_to_the_62_is_refused(tmp_path, tensors, keys):
    from zit_agent.backends.single_file import inspect_file
    from zit_agent.errors import UserError

    path = tmp_path / "dit.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, tensors, keys) + bytes(64))
    with pytest.raises(UserError, match="is not a readable GGUF file"):
        inspect_file(path, "transformer")


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"noise": {"strength": ".inf"}}, "configs.raw.noise.strength"),
        ({"noise": {"strength": 1e308}}, "configs.raw.noise.strength"),
        ({"noise": {"strength": 0.5, "seed": -5}}, "configs.raw.noise.seed"),
        ({"sampling": {"temperature": ".nan"}}, "configs.raw.sampling.temperature"),
        ({"sampling": {"max_new_tokens": 10**9}}, "configs.raw.sampling.max_new_tokens"),
        ({"layer": 99999}, "configs.raw.layer"),
        ({"shift": ".inf"}, "configs.raw.shift"),
    ],
    ids=["noise-Infinity", "noise-1e308", "noise-seed-minus-5", "temperature-NaN",
         "max-new-tokens-10^9", "layer-99999", "shift-Infinity"],
)  # fmt: skip
def test_a_suite_config_with_an_out_of_bounds_number_names_its_field(config, field):
    import yaml

    from tests.evals.helpers import sketch_suite
    from zit_agent.errors import UserError
    from zit_agent.evals.suite import parse_suite

    text = yaml.safe_dump(sketch_suite(configs={"raw": {"strategy": "raw", **config}}))
    text = text.replace("'.inf'", ".inf").replace("'.nan'", ".nan")  # YAML's own infinity
    with pytest.raises(UserError, match=f"field {field}"):
        parse_suite(text)
