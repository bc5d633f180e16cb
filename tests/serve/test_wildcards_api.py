"""Wildcard ideas through the HTTP APIs: each image's idea expanded from its own seed (the run
API's, so the same as `zit generate`), a missing file a 422 naming it, and no request may name a
wildcard folder (the server reads only its own)."""

from __future__ import annotations

from zit_agent.agent.wildcards import Wildcards


def test_openai_images_expand_each_seeds_idea(client, zit_home):
    folder = zit_home / "wildcards"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "animal.txt").write_text("cat\ndog\nfox\nowl\n", encoding="utf-8")
    template = "a __animal__ in {rain|snow}"
    body = {"prompt": template, "n": 3, "seed": 9, "size": "64x64", "ruts": False}
    answer = client.post("/v1/images/generations", json=body)
    assert answer.status_code == 200, answer.text
    revised = [item["revised_prompt"] for item in answer.json()["data"]]
    assert revised == Wildcards([folder]).expand(template, [9, 10, 11])


def test_a_missing_wildcard_is_a_422_and_a_request_cannot_name_a_folder(client, tmp_path):
    missing = client.post("/api/generate", json={"idea": "a __unicorn__", "size": "64x64"})
    assert missing.status_code == 422
    assert "wildcard __unicorn__ has no file" in missing.json()["error"]["message"]
    named = client.post("/api/generate", json={"idea": "a __x__", "wildcards": str(tmp_path)})
    assert named.status_code == 422 and named.json()["error"]["param"] == "wildcards"


def test_the_plain_path_answers_each_images_own_idea(qwen_tokenizer, zit_home):
    """The plain path (no writer, no ruts, the Z-Image backend), with the sketch renderer standing
    in for Z-Image's pixels: each image is answered with its seed's expansion."""
    from fastapi.testclient import TestClient

    from zit_agent.agent.run import Parts, PartsSpec, Runner
    from zit_agent.agent.serve import create_app
    from zit_agent.backends.embedders import HashEmbedder
    from zit_agent.backends.tiny.sketch import SketchBackend
    from zit_agent.settings import load_settings

    folder = zit_home / "wildcards"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "animal.txt").write_text("cat\ndog\nfox\nowl\n", encoding="utf-8")
    parts = Parts(PartsSpec(backend="zimage"), qwen_tokenizer, SketchBackend(qwen_tokenizer),
                  None, HashEmbedder())  # fmt: skip
    app = create_app(load_settings(), runner=Runner(load_settings(), parts))
    body = {"prompt": "a __animal__", "n": 4, "seed": 2, "size": "64x64", "ruts": False}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        answer = client.post("/v1/images/generations", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["zit"]["message"] == "rendered once: the idea's plain sequence"
    revised = [item["revised_prompt"] for item in answer.json()["data"]]
    assert revised == Wildcards([folder]).expand("a __animal__", [2, 3, 4, 5])
