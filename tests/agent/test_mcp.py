"""`zit mcp`: the official MCP SDK's own client starts `zit mcp --backend sketch` as a subprocess
over stdio, lists the tools, calls them and reads the session resources. Bad arguments come back as
tool errors (isError), and the server goes on."""

from __future__ import annotations

import base64
import io
import json
import os
import sys
from pathlib import Path

import anyio
import pytest

pytestmark = pytest.mark.slow  # starts a process

TOOLS = {"generate", "chat", "ruts", "tokens", "expand"}


def test_help_imports_neither_mcp_nor_dynamicprompts():
    import subprocess

    code = (
        "import sys\n"
        "from zit_agent.agent.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('LOADED', [m for m in ('mcp', 'dynamicprompts', 'starlette') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "LOADED []" in out.stdout, out.stdout + out.stderr
    assert "mcp" in out.stdout  # the command is listed


def _params(zit_home: Path, *args: str):
    from mcp.client.stdio import StdioServerParameters

    env = {**os.environ, "ZIT_HOME": str(zit_home), "ZIT_CONFIG": os.devnull}
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "zit_agent.agent", "mcp", "--backend", "sketch", "--size", "128x128", *args],
        env=env,
    )


def talk(zit_home: Path, script, *args: str):
    """Run `script(session)` against a fresh `zit mcp` subprocess."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import stdio_client

    async def main():
        with open(os.devnull, "w") as quiet:
            async with (
                stdio_client(_params(zit_home, *args), errlog=quiet) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                return await script(session)

    return anyio.run(main)


def payload(result) -> dict:
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


def test_the_sdk_client_lists_the_tools_and_generates_with_the_sketch_stand_in(zit_home):
    from PIL import Image

    progress: list[tuple[float, str | None]] = []

    async def script(session):
        tools = await session.list_tools()

        async def on_progress(value, total, message):
            progress.append((value, message))

        result = await session.call_tool(
            "generate", {"idea": "a portrait of a woman in a cafe", "n": 3, "seed": 0},
            progress_callback=on_progress,
        )  # fmt: skip
        return tools, result

    tools, result = talk(zit_home, script)
    assert {tool.name for tool in tools.tools} >= TOOLS
    schema = next(t for t in tools.tools if t.name == "generate").input_schema
    assert {"idea", "n", "size", "seed", "writer", "ruts"} <= set(schema["properties"])

    answer = payload(result)
    assert answer["verdict"] in ("ok", "warn", "rut") and len(answer["images"]) == 3
    assert all(Path(p).is_file() for p in answer["images"])
    assert answer["ruts_detected"] == 1 and answer["levers"][0]["lever"] == "vary"
    images = [c for c in result.content if c.type == "image"]
    assert len(images) == 3 and all(c.mime_type == "image/png" for c in images)
    preview = Image.open(io.BytesIO(base64.b64decode(images[0].data)))
    assert max(preview.size) <= 256
    # progress notifications came while it ran: renders, the judge's verdicts, the escape
    messages = " ".join(m or "" for _, m in progress)
    assert "render" in messages and "attempt 1: rut" in messages and "escape: vary" in messages
    assert [v for v, _ in progress] == sorted(v for v, _ in progress)


def test_bad_arguments_are_tool_errors_and_the_server_goes_on(zit_home):
    async def script(session):
        bad = [
            await session.call_tool("generate", {"idea": "a cat", "size": "big"}),
            await session.call_tool("generate", {"idea": "a cat", "n": 0}),
            await session.call_tool("generate", {"idea": "a __nowhere__ cat"}),
            await session.call_tool("generate", {"n": 2}),  # no idea
            await session.call_tool("chat", {"session": "../x", "text": "a cat"}),
            await session.call_tool("ruts", {"paths": ["/no/such/image.png", "/no/b.png"]}),
            await session.call_tool("expand", {"idea": "a cat"}),  # no writer
        ]
        good = await session.call_tool("tokens", {"idea": "a cat"})
        return bad, good

    bad, good = talk(zit_home, script)
    texts = [result.content[0].text for result in bad]
    assert all(result.is_error for result in bad), texts
    assert "bad size 'big'" in texts[0]
    assert "bad value for n: Input should be greater than or equal to 1" in texts[1]
    assert "wildcard __nowhere__ has no file" in texts[2]
    assert "idea" in texts[3] and "Field required" in texts[3]  # the SDK's own validation
    assert "bad session name" in texts[4]
    assert "no such file or folder" in texts[5]
    assert "expand needs a writer" in texts[6]
    assert all("Traceback" not in text for text in texts)
    ours = texts[:3] + texts[4:]  # zit's own errors are one line
    assert all("\n" not in text.strip() and "invalid input: " in text for text in ours)
    tokens = payload(good)
    assert tokens["shape"] == "plain" and tokens["token_ids"] and tokens["count"] > 0


def test_chat_turns_ruts_and_the_session_history_resource(zit_home):
    async def script(session):
        first = await session.call_tool(
            "chat", {"session": "cafe", "text": "a portrait of a woman in a cafe", "n": 2}
        )
        second = await session.call_tool("chat", {"session": "cafe", "text": "at night"})
        images = payload(second)["images"]
        judged = await session.call_tool("ruts", {"paths": images})
        listed = await session.read_resource("zit://sessions")
        history = await session.read_resource("zit://sessions/cafe")
        templates = await session.list_resource_templates()
        return first, second, judged, listed, history, templates

    first, second, judged, listed, history, templates = talk(zit_home, script)
    one, two = payload(first), payload(second)
    assert one["turn"] == 1 and len(one["images"]) == 2
    assert two["turn"] == 2 and all(d.endswith("at night") for d in two["descriptions"])
    assert [c.type for c in second.content].count("image") == 2
    report = payload(judged)
    assert report["groups"][0]["verdict"] in ("ok", "warn", "rut")
    assert json.loads(listed.contents[0].text) == [{"name": "cafe", "uri": "zit://sessions/cafe"}]
    turns = json.loads(history.contents[0].text)["turns"]
    assert [t["message"] for t in turns] == ["a portrait of a woman in a cafe", "at night"]
    assert turns[1]["images"] == two["images"]
    assert "zit://sessions/{name}" in {t.uri_template for t in templates.resource_templates}
