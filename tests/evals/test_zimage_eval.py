"""An eval on a real (tiny, random) Z-Image pipeline: the same code path as the real model."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.evals.helpers import sketch_suite
from zit_agent.evals.runner import RunContext, run_suite
from zit_agent.evals.suite import Suite

pytestmark = pytest.mark.slow  # starts processes or builds models


def test_an_eval_renders_through_the_zimage_backend(tmp_path, tiny_zimage_dir):
    data = sketch_suite(
        backend={
            "kind": "zimage",
            "model": str(tiny_zimage_dir),
            "width": 64,
            "height": 64,
            "steps": 2,
        },
        ideas=[{"id": "fox", "text": "a red fox in the snow", "locked": ["red fox"]}],
        configs={"raw": {"strategy": "raw"}, "layer-3": {"strategy": "raw", "layer": -3}},
    )
    suite = Suite.model_validate(data)
    run = RunContext(suite)  # loads the tokenizer and the backend from the model folder, once
    result = run_suite(suite, tmp_path / "run", quiet=True, context=run)
    records = [
        json.loads(x) for x in (tmp_path / "run" / "per_image.jsonl").read_text().splitlines()
    ]
    assert len(records) == 4
    for record in records:
        assert record["backend"]["token_sha256"] == record["sequence"]["sha256"]  # ids as sent
        assert record["backend"]["steps"] == 2
        if not record["backend"]["timings"]["encode_cached"]:  # seed 1 reuses seed 0's encoding
            assert record["cost"]["seconds"]["encode"] > 0
    by = {(r["config"], r["seed"]): r for r in records}
    assert by[("layer-3", 0)]["backend"]["layer"] == -3
    pixels = {k: Image.open(tmp_path / "run" / r["image"]).tobytes() for k, r in by.items()}
    assert pixels[("raw", 0)] != pixels[("layer-3", 0)]
    assert pixels[("raw", 0)] != pixels[("raw", 1)]
    assert (
        result.summary["configs"]["layer-3"]["metrics"]["mean_distance"]["vs_baseline"] is not None
    )
