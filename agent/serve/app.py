"""The app factory and the server's shared state.

`create_app(settings, options)` returns the FastAPI app. At start it opens the sessions database,
starts the job queue and loads the parts once (`Runner.load`, in a thread: the server answers
`/health` and the page meanwhile). A model request that comes while they load is queued and waits
for them, at most `SERVE.load_wait_s` (then 503 with Retry-After), as a local single-user server
would: its `queued` event says `waiting_for: models`, then `waiting` and `loaded`. Every request
then shares the one `Runner`; model work goes through the one `JobQueue`.

Around the routes, outermost first: the allowed Host names (a loopback server answers only to
loopback names, against DNS rebinding), the bearer token (every route but /health and /login), and
the body bound (413 above it; field bounds are 422s).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from zit_agent.agent.serve.jobs import Job, JobQueue, QueueFull, Unavailable
from zit_agent.defaults import SERVE
from zit_agent.errors import InternalError, ZitError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from zit_agent.agent.run import Runner
    from zit_agent.settings import Settings

log = logging.getLogger("zit_agent.serve")
PACKAGE = Path(__file__).parent
TOKEN_COOKIE = "zit_token"
OPEN_PATHS = ("/health", "/login")  # answered without the token
LOAD_CHECK_S = 0.25  # how often a job waiting for the models looks for its cancel
UPLOAD_PATHS = ("/api/ruts",)  # bodies up to SERVE.max_upload_bytes; others SERVE.max_json_bytes
STATUS = {  # error kind -> HTTP status
    "invalid input": 422, "model not found": 422, "busy": 409, "conflict": 409,
    "not found": 404, "resource exhausted": 503, "unavailable": 503, "draft failed": 502,
    "cancelled": 409, "internal": 500,
}  # fmt: skip


class NotFound(ZitError):
    kind = "not found"
    exit_code = 2


class Conflict(ZitError):
    kind = "conflict"
    exit_code = 2


class ServeState:
    """What every request shares: settings, the server's options, the runner, the queue."""

    def __init__(
        self, settings: Settings, options: BaseModel, *, runner: Runner | None = None,
        token: str | None = None, queue_size: int = SERVE.queue,
        progress: Callable[[str], None] | None = None,
        on_loaded: Callable[[ZitError | None], None] | None = None,
        load_wait_s: float = SERVE.load_wait_s,
    ) -> None:  # fmt: skip
        self.settings, self.options, self.token = settings, options, token
        self.runner, self.load_error = runner, None
        self.load_wait_s = load_wait_s
        self._loaded = threading.Event()  # set when loading ends, loaded or failed
        self.queue_size = queue_size
        self.progress = progress or (lambda text: log.info(text))
        self.on_loaded = on_loaded or (lambda error: None)
        self.jobs: JobQueue | None = None
        self.saver: Any = None
        self.started = time.time()
        self._stack = contextlib.ExitStack()

    # -- life ------------------------------------------------------------------------------------
    def start(self) -> None:
        from zit_agent.agent.session import open_checkpointer

        self.saver = self._stack.enter_context(open_checkpointer(self.settings.sessions_db))
        self.jobs = JobQueue(self.queue_size)
        if self.runner is None:
            threading.Thread(target=self._load, name="zit-load", daemon=True).start()
        else:
            self.on_loaded(None)

    def _load(self) -> None:
        from zit_agent.agent.run import Runner
        from zit_agent.errors import as_zit_error

        try:
            runner = Runner.load(self.settings, self.options, ruts=True, progress=self.progress)
        except Exception as exc:
            error = as_zit_error(exc)
            if error is None:
                log.exception("loading the models failed")
                error = InternalError(f"internal error: {type(exc).__name__}: {exc}")
            self.load_error = error
            self._loaded.set()
            self.on_loaded(error)
            return
        for note in runner.parts.notes:
            self.progress(note)
        self.runner = runner
        self._loaded.set()
        self.on_loaded(None)

    def stop(self) -> None:
        """Refuse new work (503) and cancel what waits; the running job goes on."""
        if self.jobs is not None:
            self.jobs.stop()

    def close(self) -> None:
        if self.jobs is not None:
            self.jobs.close()
        self._stack.close()
        self.progress("stopped")

    # -- use -------------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        if self.jobs is not None and self.jobs.stopping:
            return "stopping"
        if self.load_error is not None:
            return "failed"
        return "ready" if self.runner is not None else "loading"

    def require(self) -> Runner:
        """The runner; 503 while loading or stopping (or after loading failed)."""
        if self.load_error is not None:
            raise Unavailable(f"the models failed to load: {self.load_error.one_line()}", 3600)
        if self.runner is None:
            raise Unavailable("the server is loading its models")
        if self.jobs is None or self.jobs.stopping:
            raise Unavailable("the server is stopping")
        return self.runner

    def submit(self, kind: str, work: Callable[[Job], Any], label: str = "") -> Job:
        self.require()
        return self.jobs.submit(kind, work, label)

    def submit_loading(
        self, kind: str, make_work: Callable[[], Callable[[Job], Any]], label: str = ""
    ) -> Job:
        """Queue a request that came while the models load: its job waits for them (at most
        `load_wait_s` from now), then checks the request (`make_work`) and runs it."""
        if self.jobs is None or self.jobs.stopping:
            raise Unavailable("the server is stopping")
        deadline = time.monotonic() + self.load_wait_s

        def work(job: Job) -> Any:
            self.wait_for_models(job, deadline)
            return make_work()(job)

        return self.jobs.submit(kind, work, label, waiting_for="models")

    def wait_for_models(self, job: Job, deadline: float) -> None:
        """Block the job until the models are loaded (events `waiting`, then `loaded`); an
        `Unavailable` when loading failed, the server stops or `deadline` passes first. A
        cancelled job stops waiting at once."""
        if self._loaded.is_set() or self.runner is not None:
            return
        started = time.monotonic()
        job.emit("waiting", {"for": "models", "status": self.status,
                             "timeout_s": round(deadline - started, 1)})  # fmt: skip
        while not self._loaded.wait(LOAD_CHECK_S):
            job.check()
            if self.jobs is None or self.jobs.stopping:
                raise Unavailable("the server is stopping")
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"the models are still loading after {self.load_wait_s:g} s",
                    retry_after=max(SERVE.retry_after_s, 30),
                )
        job.check()
        self.require()  # loading failed: the 503 says why
        job.emit("loaded", {"waited_s": round(time.monotonic() - started, 2)})

    def store(self):
        from zit_agent.agent.history import HistoryStore

        return HistoryStore(self.settings.history_db)

    @property
    def serve_dir(self) -> Path:
        return self.settings.outputs_dir / "serve"

    def chat_dir(self, name: str) -> Path:
        return self.settings.outputs_dir / f"chat-{name}"  # where `zit chat` writes too


def create_app(
    settings: Settings, options: BaseModel | None = None, *, runner: Runner | None = None,
    token: str | None = None, allowed_hosts: list[str] | None = None,
    queue_size: int = SERVE.queue, progress: Callable[[str], None] | None = None,
    on_loaded: Callable[[ZitError | None], None] | None = None,
    load_wait_s: float = SERVE.load_wait_s,
) -> FastAPI:  # fmt: skip
    """The app. `runner`: parts already loaded (tests, benchmarks); else they load at start.
    `allowed_hosts`: the Host names answered (None: any). `load_wait_s`: how long a request
    that comes while the models load waits for them."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException

    from zit_agent.agent.serve import api, pages
    from zit_agent.options import run_options

    state = ServeState(
        settings, options or run_options(), runner=runner, token=token, queue_size=queue_size,
        progress=progress, on_loaded=on_loaded, load_wait_s=load_wait_s,
    )  # fmt: skip

    mcp, mcp_routes = mount_mcp(state)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start()
        try:
            async with mcp.session_manager.run():  # `/mcp`'s sessions live as long as the app
                yield
        finally:
            state.close()

    app = FastAPI(
        title="zit-agent",
        summary="Prompts for Z-Image-Turbo that avoid ruts: a web page and an HTTP API.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.zit = state
    app.router.routes.extend(mcp_routes)  # `/mcp`: MCP's streamable HTTP, behind the token
    app.include_router(api.router)
    app.include_router(pages.router)
    # follow_symlink: an editable install in setuptools' strict mode (the README's test command)
    # links the package's files; `..` is still refused (Starlette checks the unresolved path).
    static = StaticFiles(directory=PACKAGE / "static", follow_symlink=True)
    app.mount("/static", static, name="static")
    app.add_exception_handler(ZitError, _zit_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(BodyLimit)
    app.add_middleware(BearerToken, token=token)
    if allowed_hosts is not None:
        app.add_middleware(AllowedHosts, hosts=allowed_hosts)
    return app


def mount_mcp(state: ServeState):
    """zit's MCP server (`agent.mcp_server`) over this server's runner and job queue, as MCP's
    streamable HTTP transport at `/mcp`. The middleware around every route applies to it too (the
    token, the allowed Host names), so the SDK's own DNS-rebinding check is left off."""
    from mcp.server.transport_security import TransportSecuritySettings

    from zit_agent.agent.mcp_server import ServeHost, create_server

    server = create_server(ServeHost(state))
    http = server.streamable_http_app(
        streamable_http_path="/mcp",
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    return server, [route for route in http.routes if getattr(route, "path", "") == "/mcp"]


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("zit-agent")
    except metadata.PackageNotFoundError:
        return "0"


# -- errors --------------------------------------------------------------------------------------
def error_response(status: int, kind: str, message: str, headers: dict | None = None, **extra):
    from fastapi.responses import JSONResponse

    body = {"error": {"message": message, "type": kind, "code": status, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


def status_of(error: ZitError) -> int:
    if isinstance(error, QueueFull):
        return 429
    return STATUS.get(error.kind, 500)


async def _zit_error(request, error: ZitError):
    headers = {}
    if isinstance(error, QueueFull | Unavailable):
        headers["Retry-After"] = str(error.retry_after)
    return error_response(status_of(error), error.kind, error.one_line(), headers)


async def _validation_error(request, error):
    problems = error.errors()
    first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"] if p not in ("body", "query", "path"))
    message = f"{where}: {first['msg']}" if where else first["msg"]
    details = [{"loc": list(p["loc"]), "msg": p["msg"]} for p in problems[:20]]
    return error_response(422, "invalid input", message, param=where or None, details=details)


async def _http_error(request, error):
    kind = {401: "unauthorized", 404: "not found", 405: "method not allowed", 413: "too large"}.get(
        error.status_code, "http error"
    )
    return error_response(
        error.status_code, kind, str(error.detail), getattr(error, "headers", None)
    )


async def _unexpected(request, error: Exception):
    log.error("unexpected error on %s", request.url.path, exc_info=error)
    return error_response(500, "internal", f"internal error: {type(error).__name__}")


# -- middleware (plain ASGI: streamed responses and disconnects pass through untouched) ---------
class AllowedHosts:
    """Only these Host names are answered (400 otherwise): a page on another site that gets its
    name resolved to 127.0.0.1 (DNS rebinding) cannot talk to a loopback server."""

    def __init__(self, app, hosts: list[str]):
        self.app, self.hosts = app, {h.lower() for h in hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and host_name(dict(scope["headers"])) not in self.hosts:
            response = error_response(
                400, "invalid input", "this server does not answer to that Host"
            )
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def host_name(headers: dict[bytes, bytes]) -> str:
    """The Host header without its port ('[::1]:7860' -> '::1')."""
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class BearerToken:
    """With a token: every route but /health and /login needs `Authorization: Bearer TOKEN` (or
    the cookie /login sets for browsers, SameSite=Strict)."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.token or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        if self.authorized(dict(scope["headers"])):
            return await self.app(scope, receive, send)
        response = _unauthorized(scope)
        await response(scope, receive, send)

    def authorized(self, headers: dict[bytes, bytes]) -> bool:
        from http.cookies import SimpleCookie

        given = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, value = given.partition(" ")
        if scheme.lower() == "bearer" and same_token(value.strip(), self.token):
            return True
        cookies = SimpleCookie()
        with contextlib.suppress(Exception):
            cookies.load(headers.get(b"cookie", b"").decode("latin-1"))
        morsel = cookies.get(TOKEN_COOKIE)
        return morsel is not None and same_token(morsel.value, self.token)


def same_token(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def _unauthorized(scope):
    from fastapi.responses import HTMLResponse

    headers = {"WWW-Authenticate": "Bearer"}
    accept = dict(scope["headers"]).get(b"accept", b"").decode("latin-1")
    if scope["method"] == "GET" and "text/html" in accept:
        page = '<!doctype html><title>zit</title><p>This server needs its token: <a href="/login">log in</a>.'
        return HTMLResponse(page, status_code=401, headers=headers)
    return error_response(
        401, "unauthorized", "this server needs its token: send Authorization: Bearer TOKEN",
        headers,
    )  # fmt: skip


class BodyLimit:
    """Request bodies above the bound are refused with 413, whether Content-Length says so or
    the bytes do."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        upload = scope["path"] in UPLOAD_PATHS
        limit = SERVE.max_upload_bytes if upload else SERVE.max_json_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _too_large(limit)(scope, receive, send)
        seen = 0

        async def bounded():
            from starlette.exceptions import HTTPException

            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # FastAPI answers it through the HTTPException handler
                    raise HTTPException(413, f"the request body is over {limit} bytes")
            return message

        await self.app(scope, bounded, send)


def _too_large(limit: int):
    return error_response(413, "too large", f"the request body is over {limit} bytes")


def sse(event: dict[str, Any]) -> str:
    """One server-sent event."""
    data = json.dumps(event["data"], ensure_ascii=False)
    return f"id: {event['id']}\nevent: {event['kind']}\ndata: {data}\n\n"
