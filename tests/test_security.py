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


# Templates that ask for a huge allocation in one step: each is refused before it allocates.
GREEDY_TEMPLATES = [
    "{{ 'x'|center(100000000) }}",
    "{{ 'x'|indent(100000000, true) }}",
    "{{ 'x'.center(100000000) }}",
    "{{ '%100000000d' % 1 }}",
    "{{ '{:>100000000}'.format(1) }}",
    "{{ 10 ** (10 ** 10) }}",
]


@pytest.mark.parametrize("template", GREEDY_TEMPLATES)
def test_a_greedy_chat_template_is_refused_before_it_allocates(template):
    import tracemalloc

    from zit_agent.backends.writers.template import render_prompt

    tracemalloc.start()
    try:
        with pytest.raises(UserError, match="chat template failed: .*(limit|over 1,000,000)"):
            render_prompt(template, MESSAGES, open_think=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000  # a 100-million-character string was never made


def test_a_gguf_template_ten_to_the_ten_to_the_ten_is_refused_in_seconds(tmp_path, tokenizer_dir):
    """llama-cpp-python compiles a GGUF's chat templates at load with constant folding: this
    template used to compute a ten-billion-digit number there (a hang)."""
    import os
    import subprocess
    import sys

    from zit_agent.backends.tiny.qwen3 import build_tiny_qwen3_gguf

    path = build_tiny_qwen3_gguf(
        tmp_path / "power.gguf", tokenizer_dir, chat_template="{{ 10 ** (10 ** 10) }}"
    )
    done = subprocess.run(
        [sys.executable, "-m", "zit_agent.agent", "expand", "a cat", "--writer", f"gguf:{path}",
         "--tokenizer", str(tokenizer_dir)],
        capture_output=True, text=True, timeout=90, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "chat template failed" in done.stderr


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
