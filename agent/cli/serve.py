"""`zit serve`: the web page and the HTTP API (FastAPI on uvicorn), over the run API.

A thin front end: it checks the address and the options, binds the socket, then hands
`zit_agent.agent.serve.create_app` to uvicorn. The parts load once, after the socket is bound, with
one line per component (requests that need them get 503 until then). Ctrl-C (or SIGTERM) stops
taking new work, lets the running job finish (up to a grace period) and exits.
"""

from __future__ import annotations

from typing import Annotated

import typer

from zit_agent.agent.cli import app
from zit_agent.agent.cli.options import with_options
from zit_agent.defaults import SERVE

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@app.command()
@with_options()
def serve(
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on (default: this machine only); others need --token."
        ),
    ] = SERVE.host,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port (0: any free one, printed at start).")
    ] = SERVE.port,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="ZIT_SERVE_TOKEN",
            help="Bearer token every route but /health needs (Authorization: Bearer TOKEN).",
        ),
    ] = None,
    queue: Annotated[
        int, typer.Option(min=1, max=10_000, help="Jobs that may wait behind the running one.")
    ] = SERVE.queue,
    *,
    options,
) -> None:
    """Serve the web page (chat sessions, generation with live progress, history, eval reports)
    and the HTTP API (OpenAI-compatible /v1/images/generations and /v1/models, zit's own /api/...;
    documented at /docs). Options are those of `zit generate`: the parts load once, and the
    render options become the requests' defaults."""
    import sys
    import time

    from zit_agent.agent.run import check_request
    from zit_agent.errors import UserError
    from zit_agent.settings import load_settings

    if not is_loopback(host) and not token:
        raise UserError(
            f"--host {host} is reachable from other machines: it needs --token",
            hint="add --token SECRET (or set ZIT_SERVE_TOKEN), or keep the default 127.0.0.1",
        )
    settings = load_settings()
    check_request(settings, options, ruts=True)
    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    url = f"http://{_url_host(host)}:{bound_port}/"
    started = time.perf_counter()

    def say(text: str) -> None:
        print(f"zit serve: {text}", file=sys.stderr, flush=True)

    failed = []

    def loaded(error) -> None:
        if error is not None:
            failed.append(error)
            server.should_exit = True
        else:
            say(f"ready at {url} ({time.perf_counter() - started:.1f} s)")

    say(f"listening on {url} (API docs at {url}docs); loading the models")
    server = make_server(
        settings, options, host=host, bound=bound_host, token=token, queue=queue,
        progress=say, on_loaded=loaded,
    )  # fmt: skip
    server.run(sockets=[sock])
    if failed:
        raise failed[0]


def is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int):
    """The listening socket, or a one-line error (address in use, unknown host)."""
    import socket

    from zit_agent.errors import UserError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as err:
        raise UserError(
            f"cannot listen on {host}:{port}: {err.strerror or err}",
            hint="pick another --port, or stop what uses it",
        ) from None
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host.strip('[]')}]" if ":" in host else host


def make_server(settings, options, *, host: str, bound: str, token, queue: int, progress,
                on_loaded):  # fmt: skip
    """uvicorn's server for the app; a signal to stop first makes the app refuse new work."""
    import logging

    import uvicorn

    from zit_agent.agent.serve import create_app

    logging.basicConfig(level=logging.WARNING, format="zit serve: %(levelname)s %(message)s")
    hosts = None if not is_loopback(host) else sorted({*LOOPBACK_NAMES, host.strip("[]"), bound})
    application = create_app(
        settings, options, token=token, allowed_hosts=hosts, queue_size=queue,
        progress=progress, on_loaded=on_loaded,
    )  # fmt: skip

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            application.state.zit.stop()  # 503 for new work while the running job finishes
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        application, log_level="warning", access_log=False, lifespan="on",
        timeout_graceful_shutdown=int(SERVE.stop_grace_s),
    )  # fmt: skip
    return Server(config)
