"""`/mcp` on `zit serve`: zit's MCP server over MCP's streamable HTTP, behind the same token rule as
every other route, its calls in the server's one job queue."""

from __future__ import annotations

import json

import anyio
import pytest

from tests.serve.conftest import LiveServer, make_app

TOKEN = "s3cret-token"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def test_mcp_refuses_a_request_without_the_token(qwen_tokenizer, zit_home):
    from fastapi.testclient import TestClient

    app = make_app(qwen_tokenizer, token=TOKEN)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            refused = client.post("/mcp", json=INITIALIZE, headers={**MCP_HEADERS, **headers})
            assert refused.status_code == 401
            assert refused.json()["error"]["type"] == "unauthorized"
        assert client.get("/mcp", headers={"Accept": "text/event-stream"}).status_code == 401
        answered = client.post(
            "/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {TOKEN}"}
        )
        assert answered.status_code == 200, answered.text
        events = [line[5:] for line in answered.text.splitlines() if line.startswith("data:")]
        data = json.loads(events[0]) if events else answered.json()  # SSE or plain JSON
        assert data["result"]["serverInfo"]["name"] == "zit-agent"


@pytest.mark.slow  # a live server
def test_the_sdk_http_client_generates_through_the_servers_queue(
    qwen_tokenizer, zit_home, tmp_path
):
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    with LiveServer(make_app(qwen_tokenizer, token=TOKEN)) as server:

        async def main():
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=60) as http,
                streamable_http_client(f"{server.url}/mcp", http_client=http) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                tools = await session.list_tools()
                result = await session.call_tool(
                    "generate", {"idea": "a lighthouse at dusk", "n": 2, "seed": 4, "size": "64x64"}
                )
                images = json.loads(result.content[0].text)["images"]
                judged = await session.call_tool("ruts", {"paths": images})
                outside = await session.call_tool("ruts", {"paths": [str(tmp_path), __file__]})
                return tools, result, judged, outside

        tools, result, judged, outside = anyio.run(main)
        jobs = [job.kind for job in server.state.jobs._jobs.values()]
    assert "generate" in {tool.name for tool in tools.tools}
    assert not result.is_error, result.content[0].text
    answer = json.loads(result.content[0].text)
    assert len(answer["images"]) == 2 and answer["verdict"] in ("ok", "warn", "rut")
    assert [c.type for c in result.content].count("image") == 2
    assert jobs == ["mcp-generate", "mcp-ruts"]  # they waited in the server's one queue
    assert not judged.is_error and json.loads(judged.content[0].text)["groups"]
    assert outside.is_error and "is outside ZIT_HOME" in outside.content[0].text
