"""A plugin package adds an HTTP writer, an image backend, an embedder and an escape lever through
entry points, touching no file of zit, and each works in `zit generate`, a chat turn, an eval
suite and the server. The HTTP writer talks to a real OpenAI-compatible server on loopback
(`conftest.CompletionsServer`)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from tests.cli_helpers import run_zit as zit
from zit_agent.backends.base import Sampling

PLUGIN = ["--backend", "flat", "--embedder", "mean-colour", "--size", "64x64", "-n", "2"]


def test_a_plugin_backend_embedder_and_lever_run_in_generate(plugin_installed, capsys, tmp_path):
    code, out, err = zit(
        capsys, "generate", "a red fox in the snow", *PLUGIN, "--seed", "3",
        "--ladder", "far-seeds", "--max-attempts", "2", "--out", str(tmp_path), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["ruts_detected"] >= 1  # flat grey, whatever the seed: a rut
    levers = [lv for a in result["per_attempt"] for lv in a["levers"]]
    assert [lv["name"] for lv in levers] == ["far-seeds"]
    assert levers[0]["values"] == {"by": 7919 * 2}
    # The flat backend records only its seed; the run API adds the exact ids every record holds
    from zit_agent.backends.provenance import read_record, record_token_ids

    for image in result["images"]:
        record = read_record(image)
        assert set(record) >= {"seed", "token_ids", "token_sha256", "token_count"}
        assert len(record_token_ids(record)) == record["token_count"] > 0


def test_an_http_writer_plugin_writes_the_sequence_in_generate(
    plugin_installed, completions, capsys, tmp_path, qwen_tokenizer
):
    code, out, err = zit(
        capsys, "generate", "a red fox in the snow", *PLUGIN, "--seed", "3",
        "--writer", f"http:{completions.url}", "--retokenize",
        "--ladder", "far-seeds", "--max-attempts", "2", "--out", str(tmp_path), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    # the request went over HTTP, with the idea, the seed and the sampling's token limit
    [request] = completions.requests  # far-seeds moves seeds: no second draft
    assert request["seed"] == 3 and request["max_tokens"] == Sampling().max_new_tokens
    assert request["messages"][-1] == {"role": "user", "content": "a red fox in the snow"}
    # the served text is the description, and its re-tokenized ids are the rendered sequence
    first = result["per_attempt"][0]["shots"][0]
    served = "Served over HTTP: a red fox in the snow, in soft morning light, variation 3."
    assert first["description"] == served and first["writer"] == "served-qwen3"
    sequence = qwen_tokenizer.decode(first["token_ids"])
    assert served in sequence and "Light and one variation." in sequence  # the plan: think shape
    # the lever ran, and every image was written with the writer's record beside it
    assert [lv["name"] for a in result["per_attempt"] for lv in a["levers"]] == ["far-seeds"]
    assert len(result["images"]) == 2
    for image in (Path(p) for a in result["per_attempt"] for p in a["images"]):
        assert Image.open(image).size == (64, 64)
        writer = json.loads(image.with_suffix(".json").read_text())["writer"]
        assert writer["writer"] == f"http:{completions.url}" and writer["retokenized"]
        assert writer["stats"]["new_tokens"] == 20  # the server's usage


def test_an_http_writer_without_retokenize_is_one_line_naming_the_flag(
    plugin_installed, completions, capsys
):
    code, _, err = zit(capsys, "generate", "a cat", *PLUGIN, "--writer", f"http:{completions.url}")
    assert code == 2 and "does not report its vocabulary" in err and "--retokenize" in err
    assert "Traceback" not in err and not completions.requests  # refused before any request


def test_an_http_writer_whose_server_is_gone_is_one_line(plugin_installed, capsys, tmp_path):
    from tests.plugin.conftest import CompletionsServer

    with CompletionsServer() as gone:
        url = gone.url
    code, _, err = zit(
        capsys, "generate", "a cat", *PLUGIN, "--writer", f"http:{url}", "--retokenize",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 4 and f"writer http:{url}: no completion" in err, err
    assert "Traceback" not in err


def test_a_plugin_lever_is_a_chat_command_listed_in_help(plugin_installed, capsys, tmp_path):
    from zit_agent.agent.commands import Escape, help_text, parse_command

    assert parse_command("/far-seeds") == Escape(lever="far-seeds", raw="/far-seeds")
    assert "/far-seeds" in help_text() and "/vary" in help_text()


def test_an_unknown_lever_is_one_line_naming_the_plugins_too(plugin_installed, capsys, tmp_path):
    code, _, err = zit(capsys, "generate", "a cat", *PLUGIN, "--ladder", "vary,jump")
    assert code == 2 and "unknown jump" in err and "far-seeds" in err


def test_a_suite_runs_on_the_plugin_backend_embedder_and_lever(
    plugin_installed, tmp_path, qwen_tokenizer
):
    from tests.evals.helpers import sketch_suite
    from zit_agent.evals.runner import RunContext, run_suite
    from zit_agent.evals.suite import Suite

    data = sketch_suite(
        backend={"kind": "flat", "width": 64, "height": 64},
        embedder="mean-colour",
        ideas=[{"id": "fox", "text": "a red fox in the snow"}],
        configs={
            "raw": {"strategy": "raw"},
            "agent": {"strategy": "agent", "ladder": ["far-seeds"], "max_attempts": 2},
        },
    )
    suite = Suite.model_validate(data)
    run_suite(
        suite, tmp_path / "run", quiet=True, context=RunContext(suite, tokenizer=qwen_tokenizer)
    )
    records = [
        json.loads(x) for x in (tmp_path / "run" / "per_image.jsonl").read_text().splitlines()
    ]
    assert len(records) == 4 and {r["backend"]["kind"] for r in records} == {"flat"}
    escapes = [e for r in records for e in r["events"] if "far-seeds" in json.dumps(e)]
    assert escapes, records[0]["events"]


def test_a_suite_runs_with_the_http_writer_on_the_plugin_parts(
    plugin_installed, completions, tmp_path, qwen_tokenizer
):
    from tests.evals.helpers import sketch_suite
    from zit_agent.evals.runner import RunContext, run_suite
    from zit_agent.evals.suite import Suite

    writer = f"http:{completions.url}"
    data = sketch_suite(
        backend={"kind": "flat", "width": 64, "height": 64},
        embedder="mean-colour",
        writer=writer,
        ideas=[{"id": "fox", "text": "a red fox in the snow"}],
        configs={
            "raw": {"strategy": "raw"},
            "expanded": {"strategy": "expanded", "retokenize": True},
            "agent": {
                "strategy": "agent", "retokenize": True, "ladder": ["far-seeds"],
                "max_attempts": 2,
            },
        },
    )  # fmt: skip
    suite = Suite.model_validate(data)
    run_suite(
        suite, tmp_path / "run", quiet=True, context=RunContext(suite, tokenizer=qwen_tokenizer)
    )
    records = [
        json.loads(x) for x in (tmp_path / "run" / "per_image.jsonl").read_text().splitlines()
    ]
    by_config = {c: [r for r in records if r["config"] == c] for c in suite.configs}
    assert {c: len(rs) for c, rs in by_config.items()} == {"raw": 2, "expanded": 2, "agent": 2}
    assert all(r["writer"] is None for r in by_config["raw"])
    for record in by_config["expanded"]:  # the draft's record
        assert record["writer"]["writer"] == writer and record["writer"]["retokenized"]
        assert record["writer"]["model"] == "served-qwen3"
    for record in by_config["agent"]:  # the agent's: its writer's calls and tokens per image
        assert record["writer"]["model"] == writer and record["writer"]["calls"] == 1
    for record in by_config["expanded"] + by_config["agent"]:
        served = "Served over HTTP: a red fox in the snow, in soft morning light"
        assert record["description"].startswith(served) and served in record["sequence"]["text"]
    # one request per seed for expanded, one for the agent's first attempt (far-seeds writes none)
    assert sorted(r["seed"] for r in completions.requests) == [0, 0, 1]
    escapes = [e for r in by_config["agent"] for e in r["events"] if "far-seeds" in json.dumps(e)]
    assert escapes
    # the run records the writer, and the report counts its tokens as the server reported them
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["suite"]["writer"] == writer
    assert config["suite"]["configs"]["agent"]["retokenize"] is True
    metrics = json.loads((tmp_path / "run" / "summary.json").read_text())["configs"]
    tokens = {c: metrics[c]["metrics"]["writer_new_tokens"]["interval"]["mean"] for c in metrics}
    assert tokens == {"raw": 0.0, "expanded": 20.0, "agent": 10.0}  # agent: 1 draft, 2 images


def test_a_suite_naming_an_unregistered_backend_is_refused_at_its_line():
    import pytest

    from tests.evals.helpers import sketch_suite
    from zit_agent.evals.suite import Suite

    with pytest.raises(ValueError, match="unknown image backend 'flat'"):
        Suite.model_validate(sketch_suite(backend={"kind": "flat"}))


def test_the_server_loads_and_runs_the_plugin_writer_backend_embedder_and_lever(
    plugin_installed, completions
):
    """`zit serve --writer http:URL --backend flat --embedder mean-colour --ladder far-seeds`: the
    app loads every part through the registries (no ready runner handed in), and its routes run
    them."""
    import base64
    import io

    from fastapi.testclient import TestClient

    from zit_agent.agent.serve import create_app
    from zit_agent.options import run_options
    from zit_agent.settings import load_settings

    writer = f"http:{completions.url}"
    options = run_options(
        writer=writer, retokenize=True, backend="flat", embedder="mean-colour",
        ladder="far-seeds", max_attempts=2, size="64x64",
    )  # fmt: skip
    app = create_app(load_settings(), options)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        done = client.post("/api/generate", json={"idea": "a lighthouse", "count": 2, "seed": 3})
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["ruts_detected"] >= 1  # flat grey: the ladder ran
        assert [lv["name"] for a in body["attempts"] for lv in a["levers"]] == ["far-seeds"]
        [shot] = body["attempts"][0]["shots"]
        assert (
            shot["description"]
            == "Served over HTTP: a lighthouse, in soft morning light, variation 3."
        )
        assert shot["think"] == "Light and one variation." and shot["writer"] == "served-qwen3"
        for ref in body["images"]:
            assert Image.open(io.BytesIO(client.get(ref["url"]).content)).size == (64, 64)
            record = client.get(f"/api/images/{ref['id']}").json()
            writer_record = record["provenance"]["writer"]
            assert writer_record["writer"] == writer and writer_record["retokenized"]

        # OpenAI's images route runs the same loop; the served model is the plugin backend
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["flat"]
        images = client.post(
            "/v1/images/generations", json={"prompt": "a fox", "n": 2, "seed": 5, "size": "64x64"}
        )
        assert images.status_code == 200, images.text
        for item in images.json()["data"]:
            assert item["revised_prompt"].startswith("Served over HTTP: a fox")
            assert Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))).size == (64, 64)

        # a chat session: the plugin lever is a command, run on the served parts
        made = client.post("/api/sessions", json={"name": "fox", "idea": "a fox", "count": 2})
        assert made.status_code == 201, made.text
        turn = client.post("/api/sessions/fox/messages", json={"text": "/far-seeds"})
        assert turn.status_code == 200, turn.text
        last = turn.json()["history"][-1]
        assert [lv["name"] for a in last["attempts"] for lv in a["levers"]] == ["far-seeds"]
        # the flat backend declares no size grid (Z-Image's is 16 px): its session takes 72x40
        resized = client.post("/api/sessions/fox/messages", json={"text": "/size 72x40"})
        assert resized.status_code == 200, resized.text

        # render-again renders the record on the plugin backend
        again = client.post(f"/api/images/{body['images'][0]['id']}/render", json={})
        assert again.status_code == 200, again.text
        assert again.json()["exact"], again.json()
    # one request per written sequence: generate, the OpenAI route, the session's first turn (the
    # lever moves seeds: no new sequence)
    ideas = [completions.idea(r) for r in completions.requests]
    assert ideas == ["a lighthouse", "a fox", "a fox"]
