"""`POST /api/ruts` reads the rut kinds too: real photographs of one man read an identity rut (the
server's runner with the real face analyzer, as `Runner.load` gives it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agent.agent_fixtures import sketch_runner

FACES = Path(__file__).parents[1] / "backends" / "data" / "faces"


@pytest.fixture
def face_client(qwen_tokenizer, zit_home):
    from fastapi.testclient import TestClient

    from zit_agent.agent.serve import create_app
    from zit_agent.backends.analyzers import load_faces
    from zit_agent.settings import load_settings

    runner = sketch_runner(qwen_tokenizer)
    runner.parts.analyzer = load_faces()
    with TestClient(create_app(load_settings(), runner=runner), base_url="http://127.0.0.1") as c:
        yield c


def test_api_ruts_reads_the_same_man_as_an_identity_rut(face_client):
    names = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg"]
    files = [("files", (n, (FACES / n).read_bytes(), "image/jpeg")) for n in names]
    judged = face_client.post("/api/ruts", files=files)
    assert judged.status_code == 200, judged.text
    body = judged.json()
    assert body["verdict"] == "rut" and body["kinds"]["identity"]["verdict"] == "rut"
    assert body["kinds"]["identity"]["clusters"] == [names]
    assert sum(body["kinds"]["shot"]["bins"].values()) == 4


def test_api_ruts_without_an_analyzer_judges_layout_alone(client):
    files = [
        ("files", (n, (FACES / n).read_bytes(), "image/jpeg")) for n in ["obama.jpg", "biden.jpg"]
    ]
    body = client.post("/api/ruts", files=files).json()
    assert body["kinds"] is None and body["verdict"] in ("ok", "warn", "rut")


def test_the_chat_page_view_carries_each_kinds_verdict():
    from zit_agent.agent.serve.views import attempt_view
    from zit_agent.agent.state import Attempt, RenderKnobs, Scores

    scores = Scores(
        verdict="rut", kinds={"layout": {"verdict": "ok"}, "identity": {"verdict": "rut"}}
    )
    knobs = RenderKnobs(width=64, height=64)
    view = attempt_view(Attempt(number=1, shots=[], knobs=knobs, scores=scores))
    assert view.kinds == {"layout": "ok", "identity": "rut"}
