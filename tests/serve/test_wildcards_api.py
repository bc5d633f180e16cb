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
