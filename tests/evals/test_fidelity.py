"""Fidelity: CLIP when a CLIP model is on this machine, else locked-attribute retention."""

from __future__ import annotations

import pytest
from PIL import Image

from tests.evals.helpers import sketch_suite
from zit_agent.evals.metrics import ClipScorer, local_clip
from zit_agent.evals.runner import RunContext, run_suite
from zit_agent.evals.suite import Suite


@pytest.mark.slow
def test_clip_score_is_the_clipped_cosine_of_the_projections(tiny_clip_dir):
    import torch

    scorer = ClipScorer.from_pretrained(tiny_clip_dir)
    images = [Image.new("RGB", (48, 48), (200, 20, 20)), Image.new("RGB", (48, 48), (20, 20, 200))]
    texts = ["a red fox in the snow", "a blue teapot"]
    scores = scorer.score(images, texts)
    inputs = scorer.processor(text=texts, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        img = scorer.model.get_image_features(pixel_values=inputs["pixel_values"])
        txt = scorer.model.get_text_features(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        )
    # transformers 5 returns model outputs with the projection in `pooler_output`
    img, txt = (getattr(x, "pooler_output", x) for x in (img, txt))
    expected = torch.nn.functional.cosine_similarity(img, txt).clamp(min=0).tolist()
    assert scores == pytest.approx(expected, abs=1e-5)
    assert all(0.0 <= s <= 1.0 for s in scores)


@pytest.mark.slow
def test_a_suite_with_a_clip_model_reports_clip_fidelity(tmp_path, tiny_clip_dir, qwen_tokenizer):
    suite = Suite.model_validate(sketch_suite(fidelity=f"clip:{tiny_clip_dir}"))
    context = RunContext(suite, tokenizer=qwen_tokenizer)
    summary = run_suite(suite, tmp_path / "run", quiet=True, context=context).summary
    assert summary["fidelity"]["method"] == "clip"
    assert summary["fidelity"]["model"] == str(tiny_clip_dir)
    fidelity = summary["configs"]["raw"]["metrics"]["fidelity"]["interval"]
    assert 0.0 <= fidelity["low"] <= fidelity["mean"] <= fidelity["high"] <= 1.0


def test_auto_uses_a_cached_clip_and_falls_back_to_attributes(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert local_clip("auto") is None
    assert local_clip("attributes") is None
    repo = tmp_path / "models--openai--clip-vit-base-patch32"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    assert local_clip("auto") == "openai/clip-vit-base-patch32"
    assert local_clip("clip:/some/dir") == "/some/dir"
