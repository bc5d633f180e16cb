"""The composition levers over HTTP: a session started with candidates and `/early` sent as a
message (the sketch stand-in renders; the options are the declared run options)."""

from __future__ import annotations

import json

from tests.cli_helpers import run_zit
from tests.serve.conftest import IDEA, SMALL
from zit_agent.backends.provenance import read_record


def test_candidates_and_early_through_the_api(client, capsys):
    body = {"name": "lv", "idea": IDEA, **SMALL, "candidates": 5, "preview_step": 1}
    started = client.post("/api/sessions", json=body)
    assert started.status_code == 201, started.text
    sent = client.post("/api/sessions/lv/messages", json={"text": "/early"})
    assert sent.status_code == 200, sent.text
    code, out, err = run_zit(capsys, "chat", "--session", "lv", "--show", "--json")
    assert code == 0, err
    turns = json.loads(out)["turns"]
    records = [read_record(p) for p in turns[0]["images"]]
    assert len(records) == 2 and all(r["candidates"]["previewed"] == 5 for r in records)
    assert sorted(turns[0]["shots"][0]["seeds"]) == sorted(r["seed"] for r in records)
    assert turns[1]["settings"]["early_steps"] == 2 and turns[1]["settings"]["early_prompt"] == ""
    bad = client.post("/api/sessions", json={**body, "name": "lv2", "candidates": 1})
    assert bad.status_code == 422 and "1 candidates cannot give 2 images" in bad.text
