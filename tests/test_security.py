"""Hostile model files and text: chat templates run sandboxed, nothing loads pickles or remote code,
outputs stay in their folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from zit_agent.backends.base import Message
from zit_agent.errors import UserError

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("core", "agent", "backends", "evals")
MESSAGES = [Message(role="user", content="a cat")]

# Each reaches for Python internals from a chat template (the classic jinja2 escapes).
HOSTILE_TEMPLATES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.system('touch {marker}') }}",
    "{{ messages.__class__.__base__.__subclasses__() }}",
    "{% set _ = messages.append({'role': 'system', 'content': 'x'}) %}{{ messages }}",
    "{{ lipsum.__globals__['os'].system('touch {marker}') }}",
]


@pytest.mark.parametrize("template", HOSTILE_TEMPLATES)
def test_a_hostile_chat_template_fails_cleanly(tmp_path, template):
    from zit_agent.backends.writers.template import render_prompt

    marker = tmp_path / "ran"
    with pytest.raises(UserError, match="chat template failed"):
        render_prompt(template.replace("{marker}", str(marker)), MESSAGES, open_think=False)
    assert not marker.exists()


def test_a_gguf_whose_template_reaches_for_the_mro_fails_cleanly(capsys, tmp_path, tokenizer_dir):
    from tests.cli_helpers import run_zit
    from zit_agent.backends.base import Sampling
    from zit_agent.backends.tiny.qwen3 import build_tiny_qwen3_gguf
    from zit_agent.backends.writers.llama import LlamaCppWriter

    marker = tmp_path / "ran"
    template = "{{ ''.__class__.__mro__[1].__subclasses__() }}" + HOSTILE_TEMPLATES[1]
    path = build_tiny_qwen3_gguf(
        tmp_path / "hostile.gguf",
        tokenizer_dir,
        chat_template=template.replace("{marker}", str(marker)),
    )
    writer = LlamaCppWriter.from_pretrained(str(path), n_ctx=256, n_threads=1)
    with pytest.raises(UserError, match=r"chat template failed: .*unsafe"):
        writer.write(MESSAGES, Sampling(max_new_tokens=4), seed=0)
    code, out, err = run_zit(
        capsys, "expand", "a cat", "--writer", f"gguf:{path}", "--tokenizer", str(tokenizer_dir)
    )
    assert code == 2 and out == "" and err.count("\n") == 1 and "unsafe" in err
    assert not marker.exists()


def package_sources() -> list[Path]:
    return [p for folder in PACKAGE_FOLDERS for p in (REPO / folder).rglob("*.py")]


def test_no_code_loads_pickles_or_runs_remote_code():
    offending = []
    for path in package_sources():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0]
            if (
                re.search(r"\btorch\.load\(", code) and "weights_only=True" not in code
            ) or re.search(r"\bpickle\.loads?\(|trust_remote_code\s*=\s*True", code):
                offending.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert package_sources() and not offending, offending


@pytest.mark.parametrize("idea", ["../../escape", "/etc/passwd", "..", "a/../../b\x00c", "~root"])
def test_an_idea_never_names_a_file_outside_the_output_folder(tmp_path, idea):
    from PIL import Image

    from zit_agent.backends.base import RenderedImage
    from zit_agent.backends.provenance import save_rendered

    out = tmp_path / "out"
    rendered = [RenderedImage(image=Image.new("RGB", (16, 16)), seed=1, record={})]
    (path,) = save_rendered(rendered, out, idea=idea, prefix="run")
    written = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert path.parent == out and written == {path, path.with_suffix(".json")}
