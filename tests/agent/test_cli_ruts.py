"""`zit ruts` on folders of images: plain images (ComfyUI-style) and images with zit's records."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from zit_agent.agent.cli import main
from zit_agent.backends.base import RenderOptions
from zit_agent.backends.provenance import ImageRecord, save_image
from zit_agent.backends.tiny.sketch import SketchBackend
from zit_agent.sequence import ChatSequence, assemble

SMALL = RenderOptions(width=128, height=128)


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(["ruts", *args])
    out, err = capsys.readouterr()
    return done.value.code or 0, out, err


@pytest.fixture(scope="module")
def sketch(qwen_tokenizer) -> SketchBackend:
    return SketchBackend(qwen_tokenizer)


def render(sketch, tok, prompt: str, seeds: list[int]):
    ids = assemble(ChatSequence.plain(prompt), tok).ids
    return ids, [r.image for r in sketch.render(ids, seeds, SMALL)]


@pytest.fixture
def comfy_folder(tmp_path, sketch, qwen_tokenizer):
    """Plain PNGs with no metadata, as ComfyUI might write them: one prompt, five seeds."""
    _, images = render(sketch, qwen_tokenizer, "a portrait of a woman", list(range(5)))
    for i, image in enumerate(images):
        image.save(tmp_path / f"ComfyUI_{i:05d}_.png")
    return tmp_path


def test_a_rutted_folder_reads_rut_in_json(capsys, comfy_folder):
    code, out, _ = run(capsys, str(comfy_folder), "--json")
    result = json.loads(out)
    assert code == 0 and result["verdict"] == "rut" and result["embedder"] == "hash"
    assert result["count"] == 5 and result["mean_similarity"] >= result["thresholds"]["rut"]
    assert result["vendi"] < 2 and result["near_duplicate_rate"] > 0
    assert sorted(p for c in result["clusters"] for p in c)[0].endswith("ComfyUI_00000_.png")
    assert result["axes"] is None and result["groups"] == []


def test_the_readable_form_is_a_table(capsys, comfy_folder):
    code, out, _ = run(capsys, str(comfy_folder), "--window", "3")
    assert code == 0
    assert "all images" in out and "rut" in out and "mean sim" in out


def test_images_with_records_are_grouped_by_idea_and_name_axes(
    capsys, tmp_path, sketch, qwen_tokenizer
):
    varied = [
        "a close-up of a woman, low angle",
        "a wide shot of two people, high angle",
        "a crowd at night, bird's-eye view",
    ]
    for idea, prompts in (("portrait", ["a portrait of a woman"] * 3), ("varied", varied)):
        for seed, prompt in enumerate(prompts):
            ids, [image] = render(sketch, qwen_tokenizer, prompt, [seed])
            record = {"idea": idea, "text": qwen_tokenizer.decode(ids), "seed": seed}
            save_image(image, ImageRecord.model_validate(record), tmp_path, f"{idea}-{seed}")
    code, out, _ = run(capsys, str(tmp_path), "--json")
    groups = {g["idea"]: g for g in json.loads(out)["groups"]}
    assert code == 0
    assert groups["portrait"]["verdict"] == "rut" and groups["varied"]["verdict"] == "ok"
    axes = groups["portrait"]["axes"]
    assert axes["repeated"] == {"gender_presentation": "feminine"}
    assert "shot_size" in axes["unstated"] and "camera_angle" in axes["unstated"]
    assert groups["varied"]["wider"]["count"] == 3  # compared with the other idea's images


def test_an_idea_repeating_another_ideas_picture_is_flagged(
    capsys, tmp_path, sketch, qwen_tokenizer
):
    prompts = {
        "cat": ["a portrait of a woman"],
        "dog": ["a wide shot of a crowd", "a portrait of a woman"],
    }
    for idea, texts in prompts.items():
        for n, prompt in enumerate(texts):  # the same prompt and seed: the same picture
            ids, [image] = render(sketch, qwen_tokenizer, prompt, [0])
            save_image(
                image, ImageRecord.of({"text": prompt}, 0, idea=idea), tmp_path, f"{idea}-{n}"
            )
    groups = {g["idea"]: g for g in json.loads(run(capsys, str(tmp_path), "--json")[1])["groups"]}
    assert groups["dog"]["verdict"] == "warn" and "wider window" in groups["dog"]["reason"]
    assert groups["dog"]["wider"]["closest"].endswith("cat-0.png")


def test_embeddings_are_cached_in_the_history(capsys, comfy_folder, zit_home):
    from zit_agent.agent.history import HistoryStore

    run(capsys, str(comfy_folder), "--json")
    with HistoryStore(zit_home / "history.sqlite") as store:
        stored = store._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    assert stored == 5
    first = json.loads(run(capsys, str(comfy_folder), "--json")[1])
    assert first["verdict"] == "rut"


def test_groups_hold_the_newest_images_of_each_idea_and_of_the_others():
    """The linear grouping gives the windows by their definition (brute force over every image):
    each idea's newest `window`, and the newest `AGENT.wider_window` images of any other idea or none."""
    import random

    from zit_agent.agent.ruts import group_windows
    from zit_agent.defaults import AGENT

    rng = random.Random(3)
    ideas = ["cat", "dog", None, "owl"]
    # long runs of one idea (the layout that made the old grouping slow), then a mix
    items = [{"idea": "cat"}] * 300 + [{"idea": rng.choice(ideas)} for _ in range(400)]
    items += [{"idea": "dog"}] * 150
    everything, *groups = group_windows(items, window=5)
    assert everything.idea is None and everything.window == [845, 846, 847, 848, 849]
    assert [g.idea for g in groups] == ["cat", "dog", "owl"]
    for group in groups:
        mine = [i for i, item in enumerate(items) if item["idea"] == group.idea]
        others = [i for i, item in enumerate(items) if item["idea"] != group.idea]
        assert group.window == mine[-5:] and group.wider == others[-AGENT.wider_window :]


def test_judged_images_are_embedded_once_in_bounded_chunks(capsys, tmp_path, zit_home):
    """Every image is embedded (and cached), never more than EMBED_CHUNK decoded at once."""
    from zit_agent.agent.history import EMBED_CHUNK, HistoryStore
    from zit_agent.backends import embedders

    count = EMBED_CHUNK + 5
    for i in range(count):
        Image.new("RGB", (24, 24), (7 * i, 200 - 5 * i, 40)).save(tmp_path / f"{i:03d}.png")
    calls: list[int] = []
    real_embed = embedders.HashEmbedder.embed

    def counted(self, images):
        calls.append(len(images))
        return real_embed(self, images)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(embedders.HashEmbedder, "embed", counted)
        result = json.loads(run(capsys, str(tmp_path), "--json", "--window", "4")[1])
        assert calls == [EMBED_CHUNK, 5] and result["count"] == 4
        run(capsys, str(tmp_path), "--json")
        assert calls == [EMBED_CHUNK, 5]  # the second run embeds nothing
    with HistoryStore(zit_home / "history.sqlite") as store:
        assert store._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == count


def test_thresholds_can_be_set(capsys, comfy_folder):
    code, out, _ = run(capsys, str(comfy_folder), "--json", "--warn", "0.99", "--rut", "1.0")
    assert json.loads(out)["verdict"] == "ok"


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: [str(d / "missing")], "no such file or folder"),
        (lambda d: [str(d)], "no images in"),
        (lambda d: [_text_file(d), _text_file(d, "b.png")], "is not a readable image"),
        (lambda d: [_png(d)], "two or more images"),
        (lambda d: [_png(d), _png(d, "b.png"), "--embedder", "clip"], "unknown embedder"),
        (lambda d: [_png(d), _png(d, "b.png"), "--rut", "0.1", "--warn", "0.5"], "bad thresholds"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, setup, message):
    folder = tmp_path / "in"
    folder.mkdir()
    code, out, err = run(capsys, *setup(folder))
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def _text_file(folder, name="a.png"):
    (folder / name).write_text("not an image")
    return str(folder / name)


def _png(folder, name="a.png"):
    Image.new("RGB", (16, 16), (9, 9, 9)).save(folder / name)
    return str(folder / name)
