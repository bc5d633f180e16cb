"""zit as an MCP server: tools for chat clients and coding agents, a thin caller of the run API.

Built on the official `mcp` SDK's `MCPServer` (FastMCP before mcp 2). `zit mcp` serves it over
stdio (`LocalHost`: the parts load on the first call that needs them, one call at a time);
`zit serve` mounts it at `/mcp` over streamable HTTP (`ServeHost`: the server's runner, and its
one job queue, so MCP calls wait in line with the web page's).

Tools (each returns a JSON text block first; `generate` and `chat` add small PNG previews):
- `generate`: idea, n, size, seed, writer on/off, ruts on/off -> image paths, the rut verdict
  (with the axes it names and its numbers), the attempts;
- `chat`: session, text -> the turn's descriptions, images and verdict;
- `ruts`: image paths -> the rut report (as `zit ruts --json`);
- `tokens`: idea -> the Z-Image chat sequence's ids (as `zit tokens --json`);
- `expand`: idea -> the writer's sequence and ids (as `zit expand --json`).
Resources: `zit://sessions` (the chat sessions) and `zit://sessions/{name}` (one session's turns).
Long calls send MCP progress notifications (one per run event: write, render step, judge, ...).
Bad arguments and zit's own errors come back as tool errors (`isError`), never a crash.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

from zit_agent.defaults import AGENT
from zit_agent.errors import InternalError, UserError, ZitError, as_zit_error

if TYPE_CHECKING:
    from zit_agent.agent.run import Runner
    from zit_agent.settings import Settings

Event = Callable[[str, dict[str, Any]], None]
PREVIEW_SIZE = 256  # longest side of the previews sent as image content
MAX_PREVIEWS = 8
INSTRUCTIONS = (
    "zit-agent renders ideas with Z-Image-Turbo and checks the images for ruts (the same "
    "composition across seeds). Call `generate` with an idea; read `verdict` (ok, warn, rut) and "
    "`axes` (what repeats); refine with `chat` in a named session. Ideas may use wildcards: "
    "{a|b}, {2$$a|b|c}, __name__."
)


# -- where the work runs -------------------------------------------------------------------------
class LocalHost:
    """`zit mcp`: its own runner (loaded on first use) and sessions database; one call at a time."""

    roots: list[Path] | None = None  # `ruts` reads images anywhere on this machine: the user's

    def __init__(self, settings: Settings, options: BaseModel, *, runner: Runner | None = None):
        self.settings, self.options = settings, options
        self._runner, self._saver = runner, None
        self._lock = threading.Lock()
        self._stack = contextlib.ExitStack()

    def runner(self, progress: Callable[[str], None] = lambda text: None) -> Runner:
        from zit_agent.agent.run import Runner

        if self._runner is None:
            self._runner = Runner.load(self.settings, self.options, ruts=True, progress=progress)
        return self._runner

    def saver(self):
        from zit_agent.agent.session import open_checkpointer

        if self._saver is None:
            self._saver = self._stack.enter_context(open_checkpointer(self.settings.sessions_db))
        return self._saver

    @property
    def out_dir(self) -> Path:
        return self.settings.outputs_dir / "mcp"

    async def run(self, kind: str, work: Callable[[Runner, Event], Any], say: Event) -> Any:
        """`work(runner, on_event)` in a worker thread, alone; events reach `say` as they come."""
        from zit_agent.backends.progress import reporting_steps

        def call() -> Any:
            def on_event(event: str, data: dict[str, Any]) -> None:
                anyio.from_thread.run(say, event, data)

            with (
                self._lock,
                reporting_steps(lambda s, n: on_event("step", {"step": s, "steps": n})),
            ):
                runner = self.runner(lambda text: on_event("load", {"message": text}))
                return work(runner, on_event)

        return await anyio.to_thread.run_sync(call)

    def close(self) -> None:
        self._stack.close()


class ServeHost:
    """`/mcp` on `zit serve`: the server's runner and job queue (`agent.serve.app.ServeState`)."""

    def __init__(self, state: Any):
        self.state = state
        self.settings, self.options = state.settings, state.options
        # a remote client's `ruts` reads images under ZIT_HOME only (as the server's routes do)
        self.roots = [Path(state.settings.home).resolve()]

    def runner(self, progress: Callable[[str], None] = lambda text: None) -> Runner:
        return self.state.require()

    def saver(self):
        return self.state.saver

    @property
    def out_dir(self) -> Path:
        return self.state.serve_dir

    async def run(self, kind: str, work: Callable[[Runner, Event], Any], say: Event) -> Any:
        runner = self.state.require()
        job = self.state.submit(f"mcp-{kind}", lambda job: work(runner, job.on_event), kind)
        try:
            async for event in job.follow():
                if event["kind"] not in ("done", "failed", "cancelled", "ping"):
                    await say(event["kind"], event["data"])
        except BaseException:
            self.state.jobs.cancel(job)  # the client went away: the queue moves on
            raise
        if job.error is not None:
            raise job.error
        if job.status == "cancelled":
            raise UserError("the call was cancelled")
        return job.result


# -- the server ----------------------------------------------------------------------------------
def create_server(host: LocalHost | ServeHost) -> MCPServer:
    """The MCP server over `host` (see the module docstring)."""
    from importlib import metadata

    try:
        version = metadata.version("zit-agent")
    except metadata.PackageNotFoundError:
        version = "0"
    server = MCPServer(
        name="zit-agent", title="zit-agent", version=version, instructions=INSTRUCTIONS,
        log_level="WARNING",
    )  # fmt: skip

    @server.tool()
    async def generate(
        idea: str,
        ctx: Context,
        n: int | None = None,
        size: str | None = None,
        seed: int | None = None,
        writer: bool = True,
        ruts: bool = True,
        combinatorial: bool = False,
    ):
        """Render IDEA avoiding ruts: n images (seeds seed, seed+1, ...), size WIDTHxHEIGHT. With
        ruts on, the images are judged for a rut across seeds and the escape ladder varies the
        prompt until they differ. writer=false uses the idea as it is. Wildcards: {a|b},
        {2$$a|b|c}, __name__ (combinatorial=true renders every combination once). Returns the
        image paths, the verdict (ok, warn, rut), the axes that repeat, and previews."""
        options = _options(host, count=n, size=size, seed=seed, ruts=ruts,
                           combinatorial=combinatorial or None)  # fmt: skip
        _checked(lambda: _check(host, idea, options, ruts))

        def work(runner: Runner, on_event: Event) -> dict[str, Any]:
            from zit_agent.agent.report import summary

            chosen = runner if writer else _without_writer(runner)
            if chosen.plain_path(options, ruts=ruts):
                result = chosen.render_plain(idea, options, out_dir=host.out_dir)
                return {"images": result["images"], "verdict": None, "seeds": result["seeds"],
                        "ideas": result.get("ideas"), "message": "rendered once (ruts off)"}  # fmt: skip
            with contextlib.closing(_store(host)) as store:
                final = chosen.generate(
                    idea, options, out_dir=host.out_dir, ruts=ruts, on_event=on_event,
                    store=store, checkpointer=host.saver(),
                )  # fmt: skip
            return _generated(summary(final), final)

        result = await _run(host, ctx, "generate", work)
        return _answer(result)

    @server.tool()
    async def chat(
        session: str,
        text: str,
        ctx: Context,
        n: int | None = None,
        size: str | None = None,
        seed: int | None = None,
    ):
        """One turn of a chat session (created by its first text, the idea). Later texts refine
        the description; /vary, /shorter, /undo, /seed N, /size WxH, /layer N are commands.
        Returns the turn's descriptions, images, verdict and previews."""
        from zit_agent.agent.chat import check_session_name
        from zit_agent.options import run_options

        _checked(lambda: check_session_name(session))
        own = {k: v for k, v in {"count": n, "size": size, "seed": seed}.items() if v is not None}
        first = _options(host, **own)  # a new session: the host's options, this call's on top
        later = _checked(lambda: run_options(**own))  # later turns: the session's own

        def work(runner: Runner, on_event: Event) -> dict[str, Any]:
            from zit_agent.agent.commands import Local

            talk = runner.chat(
                session, host.saver(), out_dir=host.settings.outputs_dir / f"chat-{session}",
                on_event=on_event,
            )  # fmt: skip
            new = talk.status() == "new"
            if new:
                _check(host, text, first, bool(first.ruts))
            outcome = talk.turn(text, first if new else later)
            state = talk.state()
            answer = _turn(session, state)
            if isinstance(outcome, Local):
                answer["local"] = outcome.kind
            return answer

        return _answer(await _run(host, ctx, "chat", work))

    @server.tool()
    async def ruts(paths: list[str], ctx: Context, window: int = AGENT.window):
        """Judge whether images (files or folders of them) repeat one composition: mean
        similarity, Vendi score, near-duplicate clusters, the verdict per group (as `zit ruts`)."""
        if window < 2:
            raise ToolError("window must be 2 or more")
        items = _checked(lambda: _image_items(paths, host.roots))

        def work(runner: Runner, on_event: Event) -> dict[str, Any]:
            from PIL import Image as PILImage

            from zit_agent.agent.ruts import judge_images

            embedder = runner.parts.embedder
            on_event("embed", {"images": len(items), "embedder": embedder.name})
            with contextlib.closing(_store(host)) as store:
                result = judge_images(
                    store, embedder, runner.parts.analyzer, items, window,
                    lambda path: PILImage.open(path).convert("RGB"),
                    kinds_note=runner.parts.analyzer_note,
                )  # fmt: skip
            return json.loads(json.dumps(result, default=str))

        return _answer(await _run(host, ctx, "ruts", work), previews=False)

    @server.tool()
    async def tokens(
        idea: str,
        ctx: Context,
        think: str | None = None,
        assistant: str | None = None,
        max_tokens: int | None = None,
    ):
        """The exact Z-Image chat sequence of IDEA and its token ids (the plain shape: what
        diffusers feeds the encoder; with think/assistant: the think or answer shape)."""

        def work(runner: Runner, on_event: Event) -> dict[str, Any]:
            from zit_agent.options import run_options
            from zit_agent.sequence import assemble, assembled_json, sequence_of_parts

            sequence = sequence_of_parts(idea, think=think, assistant=assistant)
            budget = runner.budget(run_options(max_tokens=max_tokens))
            result = assemble(sequence, runner.parts.tokenizer, max_tokens=budget)
            return assembled_json(result, runner.parts.tokenizer.source)

        return _answer(await _run(host, ctx, "tokens", work), previews=False)

    @server.tool()
    async def expand(idea: str, ctx: Context, seed: int = 0, shape: str = "think"):
        """The writer's description of IDEA as Z-Image's chat sequence and its token ids (as
        `zit expand`). A wildcard idea is expanded with `seed` first. Needs a writer."""

        def work(runner: Runner, on_event: Event) -> dict[str, Any]:
            from zit_agent.options import run_options

            if runner.parts.writer is None:
                raise UserError("expand needs a writer", hint="start zit mcp with {writer}")
            options = _options(host, seed=seed, count=1)
            _, ideas = runner.idea_seeds(idea, options, 1)
            text = ideas[0] if ideas else idea
            on_event("write", {"idea": text})
            result = runner.write(
                text, shape=shape, seed=seed, max_tokens=runner.budget(run_options())
            )
            draft = result.draft
            return {
                "idea": text, "template": idea if ideas else None,
                "token_ids": result.assembled.ids, "text": result.assembled.text,
                "think": draft.think.text, "answer": draft.answer.text,
                "shape": result.assembled.shape, "count": result.assembled.count,
                "seed": result.seed, "writer": draft.model,
            }  # fmt: skip

        return _answer(await _run(host, ctx, "expand", work), previews=False)

    @server.resource("zit://sessions", mime_type="application/json")
    def sessions() -> str:
        """The chat sessions (names, turns, status), newest first."""
        return json.dumps(_sessions(host), ensure_ascii=False)

    @server.resource("zit://sessions/{name}", mime_type="application/json")
    def session_history(name: str) -> str:
        """One chat session's history: every turn's message, descriptions, images and verdict."""
        from zit_agent.agent.chat import check_session_name, read_state
        from zit_agent.agent.graph import run_config
        from zit_agent.agent.run import compiled_graph
        from zit_agent.agent.state import AgentState

        check_session_name(name)
        app = compiled_graph(host.saver())
        state = read_state(app, run_config(AgentState(idea="-"), f"chat:{name}"))
        if state is None:
            raise UserError(f"no session named {name!r}")
        return json.dumps(_history(name, state), ensure_ascii=False)

    return server


# -- helpers -------------------------------------------------------------------------------------
def _options(host: LocalHost | ServeHost, **values: Any) -> BaseModel:
    """The host's options with a call's on top; a bad value is a tool error naming it."""
    from zit_agent.options import given, run_options

    values = {k: v for k, v in values.items() if v is not None}
    return _checked(lambda: run_options(**{**given(host.options), **values}))


def _check(host, idea: str, options: BaseModel, ruts: bool) -> None:
    from zit_agent.agent.run import check_request

    if not idea.strip():
        raise UserError("the idea is empty", hint="give an idea with some words in it")
    check_request(host.settings, options, ruts=ruts, idea=idea)


def _checked(call: Callable[[], Any]) -> Any:
    """`call()`, with zit's errors as MCP tool errors (one line, options as `name`)."""
    try:
        return call()
    except ZitError as err:
        raise ToolError(f"{err.kind}: {err.one_line(_argument)}") from None


async def _run(host, ctx: Context, kind: str, work: Callable[[Runner, Event], Any]) -> Any:
    """Run `work` on the host, sending one progress notification per run event."""
    count = 0

    async def say(event: str, data: dict[str, Any]) -> None:
        nonlocal count
        count += 1
        with contextlib.suppress(Exception):  # a client that asked for no progress
            await ctx.report_progress(count, None, _progress_message(event, data))

    try:
        return await host.run(kind, work, say)
    except ToolError:
        raise
    except Exception as exc:
        error = as_zit_error(exc) or InternalError(f"internal error: {type(exc).__name__}: {exc}")
        raise ToolError(f"{error.kind}: {error.one_line(_argument)}") from None


def _argument(option: str) -> str:
    """A run option as the tools name it (`count` is `n`)."""
    return {"count": "n"}.get(option, option)


def _progress_message(event: str, data: dict[str, Any]) -> str:
    if event == "step":
        return f"render step {data.get('step')}/{data.get('steps')}"
    if event == "judge":
        return f"attempt {data.get('attempt')}: {data.get('verdict')} ({data.get('reason', '')})"
    if event == "escape":
        return f"escape: {data.get('lever')}: {data.get('detail', '')}"
    if event in ("load", "write"):
        return f"{event}: {data.get('message') or data.get('description') or data.get('idea', '')}"
    return event


def _without_writer(runner: Runner) -> Runner:
    return runner if runner.parts.writer is None else runner.using(writer=None)


def _store(host):
    from zit_agent.agent.history import HistoryStore

    return HistoryStore(host.settings.history_db)


def _generated(result: dict[str, Any], final: Any) -> dict[str, Any]:
    """What `generate` answers: the images, the verdict with what it names, the attempts."""
    chosen = final.attempts[final.final_attempt] if final.final_attempt is not None else None
    scores = chosen.scores if chosen is not None else None
    return {
        "images": result["images"],
        "verdict": result["final_verdict"],
        "reason": scores.reason if scores else None,
        "axes": scores.axes if scores else [],
        "mean_similarity": scores.mean_similarity if scores else None,
        "vendi": scores.vendi if scores else None,
        "message": result["message"],
        "attempts": result["attempts"],
        "ruts_detected": result["ruts_detected"],
        "ruts_escaped": result["ruts_escaped"],
        "template": final.idea if final.expansions else None,
        "descriptions": [s.description.full_text for s in chosen.shots] if chosen else [],
        "levers": [
            {"attempt": a.number, "lever": lv.name, "detail": lv.detail, "effect": lv.effect}
            for a in final.attempts
            for lv in a.levers
        ],
        "run": result["run"],
    }


def _turn(session: str, state: Any) -> dict[str, Any]:
    """A chat turn's answer: the session's current descriptions, images and verdict."""
    turn = state.turns[-1] if state.turns else None
    last = state.attempts[-1] if state.attempts else None
    return {
        "session": session,
        "turn": len(state.turns),
        "descriptions": [shot.description.full_text for shot in state.shots],
        "images": [p for shot in state.shots for p in shot.images],
        "verdict": turn.verdict if turn else None,
        "axes": last.scores.axes if last and last.scores else [],
        "error": turn.error if turn else None,
        "message": state.message,
    }


def _history(name: str, state: Any) -> dict[str, Any]:
    turns = []
    for turn in state.turns:
        turns.append(
            {
                "message": turn.message,
                "verdict": turn.verdict,
                "error": turn.error,
                "descriptions": [shot.description.full_text for shot in turn.shots],
                "images": [p for shot in turn.shots for p in shot.images],
                "attempts": [state.attempts[i].number for i in turn.attempts],
            }
        )
    return {"session": name, "idea": state.idea, "seed": state.seed, "turns": turns}


def _sessions(host) -> list[dict[str, Any]]:
    import sqlite3

    path = host.settings.sessions_db
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        try:
            rows = db.execute(
                "SELECT DISTINCT thread_id FROM checkpoints WHERE thread_id LIKE 'chat:%'"
            ).fetchall()
        except sqlite3.Error:
            return []
    names = sorted(row[0].removeprefix("chat:") for row in rows)
    return [{"name": name, "uri": f"zit://sessions/{name}"} for name in names]


def _image_items(paths: list[str], roots: list[Path] | None = None) -> list[dict[str, Any]]:
    """The images of `paths` (files, or folders of them) as the rut check reads them; with
    `roots`, only paths inside them."""
    from zit_agent.agent.ruts import collect_images, image_item

    return [image_item(path) for path in collect_images([Path(p) for p in paths], roots)]


def _answer(result: dict[str, Any], *, previews: bool = True) -> list[Any]:
    """The JSON text first, then small PNG previews of the images (MCP image content)."""
    content: list[Any] = [json.dumps(result, ensure_ascii=False, indent=1, default=str)]
    if previews:
        content += [_preview(path) for path in result.get("images", [])[:MAX_PREVIEWS]]
    return [item for item in content if item is not None]


def _preview(path: str) -> Image | None:
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
    except OSError:
        return None
    return Image(data=buffer.getvalue(), format="png")


# -- stdio ---------------------------------------------------------------------------------------
def serve_stdio(settings: Settings, options: BaseModel) -> None:
    """`zit mcp`: serve over stdin/stdout until the client closes them."""
    host = LocalHost(settings, options)
    try:
        anyio.run(create_server(host).run_stdio_async)
    finally:
        host.close()
