"""Chat refinement from an image: `/pick N`, a text turn that changes the picked image by
image-to-image, `/vary subtle|strong [N]`, `/unpick`, undo, and bad picks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.agent.agent_fixtures import IDEA
from tests.cli_helpers import run_zit as zit
from zit_agent.backends.provenance import read_record

SKETCH = ["--backend", "sketch", "--size", "128x128", "-n", "2", "--seed", "5"]


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def turn(capsys, session: str, message: str, *extra) -> dict:
    code, out, err = zit(
        capsys, "chat", "--session", session, "--message", message, "--json", *map(str, extra)
    )
    assert code == 0, err
    return json.loads(out)


def refused(capsys, session: str, message: str) -> str:
    code, out, err = zit(capsys, "chat", "--session", session, "--message", message)
    assert code == 2, (code, out, err)
    assert len(err.strip().splitlines()) == 1
    return err.strip()


def inits(images: list[str]) -> list[dict | None]:
    return [read_record(path).get("init") for path in images]


def test_pick_then_text_refines_the_picked_image_and_undo_takes_it_back(capsys):
    first = turn(capsys, "p", IDEA, *SKETCH)
    picked = turn(capsys, "p", "/pick 2")
    assert picked["images"] == [] and picked["start_image"] == first["images"][1]

    changed = turn(capsys, "p", "wearing a red coat")
    assert len(changed["images"]) == 2
    for init in inits(changed["images"]):
        assert init["image"] == first["images"][1] and init["sha256"] == sha(first["images"][1])
        assert init["strength"] == 0.6
    again = turn(capsys, "p", "in the rain")  # the pick holds for the next turns
    assert {i["image"] for i in inits(again["images"])} == {first["images"][1]}

    varied = turn(capsys, "p", "/vary strong 1")
    assert varied["description"] == again["description"]  # the same sequence, new seeds
    assert {i["image"] for i in inits(varied["images"])} == {again["images"][0]}
    assert {i["strength"] for i in inits(varied["images"])} == {0.7}
    assert {read_record(p)["seed"] for p in varied["images"]}.isdisjoint({5, 6})

    undone = turn(capsys, "p", "/undo")  # back to the turn before the /vary
    assert undone["start_image"] == first["images"][1] and undone["strength"] == 0.6
    turn(capsys, "p", "/unpick")
    plain = turn(capsys, "p", "at night")
    assert inits(plain["images"]) == [None, None]


def test_vary_subtle_without_a_number_varies_the_picked_image(capsys):
    first = turn(capsys, "v", IDEA, *SKETCH)
    turn(capsys, "v", "/pick 2 0.5")
    varied = turn(capsys, "v", "/vary subtle")
    assert {i["image"] for i in inits(varied["images"])} == {first["images"][1]}
    assert {i["strength"] for i in inits(varied["images"])} == {0.3}


def test_bad_picks_are_one_line_and_leave_the_session(capsys):
    turn(capsys, "b", IDEA, *SKETCH)
    assert "the last turn has 2 image(s)" in refused(capsys, "b", "/pick 3")
    assert "images count from 1" in refused(capsys, "b", "/pick 0")
    assert "/pick needs an image number" in refused(capsys, "b", "/pick")
    assert "strength 1.5 is out of range" in refused(capsys, "b", "/pick 1 1.5")
    assert "bad /vary" in refused(capsys, "b", "/vary medium")
    assert "the last turn has 2 image(s)" in refused(capsys, "b", "/vary subtle 7")
    after = turn(capsys, "b", "with a hat")
    assert inits(after["images"]) == [None, None]


def test_pick_on_the_tiny_zimage_renders_from_the_picked_image(capsys, tiny_zimage_dir):
    first = turn(
        capsys, "z", IDEA, "--image-model", tiny_zimage_dir, "--size", "64x48", "--steps", "2",
        "-n", "2", "--seed", "5",
    )  # fmt: skip
    turn(capsys, "z", "/pick 1")
    changed = turn(capsys, "z", "in the snow")
    [init, _] = inits(changed["images"])
    assert init["sha256"] == sha(first["images"][0])
    assert init["zit_record"] == str(Path(first["images"][0]).with_suffix(".json").resolve())
    assert read_record(changed["images"][0])["prompt"].endswith("in the snow")
    varied = turn(capsys, "z", "/vary subtle 2")  # the same token ids, from image 2, new seeds
    same_ids = {read_record(p)["token_sha256"] for p in changed["images"] + varied["images"]}
    assert len(same_ids) == 1
    assert inits(varied["images"])[0]["sha256"] == sha(changed["images"][1])
