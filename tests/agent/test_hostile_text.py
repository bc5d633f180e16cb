"""Text a person or a file chose (ideas, descriptions, session, suite and config names, paths) is
printed as text: never as rich markup, never as terminal codes (issue 24's markup findings)."""

from __future__ import annotations

import json
import re

import pytest

from tests.cli_helpers import run_zit as zit

LINK_AND_BLINK = "a [link=file:///etc/passwd]cat[/link] [blink]x"
CLOSING_TAG = "a cat [/]"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture()
def terminal(monkeypatch):
    """rich writes colours, links and blink only to a terminal: make every console think so."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)


def shown(text: str) -> str:
    """What a person reads: the text without its colour codes (links and blink are kept)."""
    return " ".join(ANSI.sub("", text).split())


def no_injected_codes(text: str) -> bool:
    return "\x1b]8;" not in text and "\x1b[5m" not in text and "\x1b[5;" not in text


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        (LINK_AND_BLINK, LINK_AND_BLINK),
        (CLOSING_TAG, CLOSING_TAG),
        ("ends in a backslash \\", "ends in a backslash \\"),
        ("a :cat: emoji code", "a :cat: emoji code"),
        ("a bell\x07 and \x1b[5mblink", "a bell\\x07 and \\x1b[5mblink"),
    ],
)
def test_plain_prints_user_text_as_it_is(value, printed):
    from rich.console import Console

    from zit_agent.agent.cli.output import new_console, plain

    console: Console = new_console(force_terminal=True, width=200, highlight=False)
    with console.capture() as captured:
        console.print(f"[bold]idea: {plain(value)}[/]")
    assert no_injected_codes(captured.get())
    assert shown(captured.get()) == f"idea: {printed}"


def generate(model_dir, idea: str, *args: str) -> list[str]:
    return ["generate", idea, "--writer", "none", "--image-model", str(model_dir), "--size",
            "64x64", "--steps", "1", "--seed", "1", *args]  # fmt: skip


def test_generate_a_link_and_blink_markup_idea_prints_as_text(
    capsys, terminal, tiny_zimage_dir, tmp_path
):
    code, out, err = zit(capsys, *generate(tiny_zimage_dir, LINK_AND_BLINK, "-n", "2",
                                           "--max-attempts", "1", "--out", str(tmp_path)))  # fmt: skip
    assert code == 0, err
    assert no_injected_codes(out + err)
    assert LINK_AND_BLINK in shown(err)


def test_generate_a_cat_closing_tag_does_not_crash(capsys, terminal, tiny_zimage_dir, tmp_path):
    code, out, err = zit(capsys, *generate(tiny_zimage_dir, CLOSING_TAG, "-n", "2", "--max-attempts", "1",
                                           "--out", str(tmp_path)))  # fmt: skip
    assert code == 0, err
    assert f"write (no writer: the idea as it is): {CLOSING_TAG}" in shown(err)
    assert out.strip().endswith(".png")


def test_chat_a_cat_closing_tag_first_turn_and_show(capsys, terminal, tiny_zimage_dir, tmp_path):
    args = ["chat", "--session", "tags", "--writer", "none", "--image-model", str(tiny_zimage_dir),
            "--size", "64x64", "--steps", "1", "--seed", "1", "--out", str(tmp_path)]  # fmt: skip
    code, out, err = zit(capsys, *args, "--message", CLOSING_TAG)
    assert code == 0, err
    assert f"description: {CLOSING_TAG}" in shown(err)
    code, out, err = zit(capsys, "chat", "--session", "tags", "--show")
    assert code == 0, err
    assert f"1. {CLOSING_TAG}" in shown(out + err)
    code, out, _ = zit(capsys, "chat", "--session", "tags", "--show", "--json")
    assert json.loads(out)["turns"][0]["message"] == CLOSING_TAG


def test_eval_a_suite_named_a_cat_closing_tag_prints_its_table(capsys, terminal, tmp_path):
    from tests.evals.helpers import sketch_suite, write_suite

    suite = sketch_suite(name=CLOSING_TAG, ideas=sketch_suite()["ideas"][:1])
    path = write_suite(tmp_path / "tags.yaml", suite)
    code, out, err = zit(capsys, "eval", str(path), "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert f"{CLOSING_TAG}: 2 images" in shown(out)
    code, out, err = zit(capsys, "eval", "compare", str(tmp_path / "run"), str(tmp_path / "run"))
    assert code == 0, err and "minus" in out


def test_ruts_of_images_whose_idea_is_a_cat_closing_tag(capsys, terminal, tmp_path, qwen_tokenizer):
    from zit_agent.backends.base import RenderOptions
    from zit_agent.backends.provenance import ImageRecord, save_image
    from zit_agent.backends.tiny.sketch import SketchBackend
    from zit_agent.sequence import ChatSequence, assemble

    ids = assemble(ChatSequence.plain(CLOSING_TAG), qwen_tokenizer).ids
    rendered = SketchBackend(qwen_tokenizer).render(
        ids, [0, 0, 1], RenderOptions(width=64, height=64)
    )
    for i, r in enumerate(rendered):
        record = ImageRecord.of(r.record, r.seed, idea=CLOSING_TAG, text=CLOSING_TAG)
        save_image(r.image, record, tmp_path, f"img{i}")
    code, out, err = zit(capsys, "ruts", str(tmp_path))
    assert code == 0, err
    assert no_injected_codes(out)
    assert f"{CLOSING_TAG}: near-duplicates" in shown(out)
