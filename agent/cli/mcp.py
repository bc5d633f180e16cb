"""`zit mcp`: zit as an MCP server over stdio, for chat clients and coding agents.

A thin front end: it checks the options, then hands them to `zit_agent.agent.mcp_server`, which
serves the tools (generate, chat, ruts, tokens, expand) and the session resources on the official
`mcp` SDK. The parts load on the first call that needs them. stdout carries the protocol, so
nothing else is printed there; the loading lines go to stderr.
"""

from __future__ import annotations

from zit_agent.agent.cli import app
from zit_agent.agent.cli.options import with_options


@app.command()
@with_options()
def mcp(*, options) -> None:
    """Serve zit's tools over MCP on stdin/stdout (a desktop client starts this command; see
    docs/mcp.md). Options are those of `zit serve`: the parts (backend, image model, writer)
    load once, on the first call, and the render options become the calls' defaults."""
    from zit_agent.agent.mcp_server import serve_stdio
    from zit_agent.agent.run import check_request
    from zit_agent.settings import load_settings

    settings = load_settings()
    check_request(settings, options, ruts=True)
    serve_stdio(settings, options)
