"""Candidates end to end: `zit generate --candidates M --preview-step K` on the tiny Z-Image, the
choice against the history, and the selection rule itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.cli_helpers import run_zit as zit
from zit_agent.backends.provenance import read_record

IDEA = "a lighthouse at night"
STEPS = 4


def generate(capsys, model_dir, *args):
    base = ["generate", IDEA, "--writer", "none", "--no-ruts", "--image-model", str(model_dir)]
    return zit(capsys, *base, "--size", "64x48", "--steps", str(STEPS), "--batch", "1", *args)


def pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_kept_candidates_equal_plain_renders_of_their_seeds(capsys, tiny_zimage_dir, tmp_path):
    code, out, err = generate(
        capsys, tiny_zimage_dir, "--candidates", "8", "--preview-step", "2", "-n", "3",
        "--seed", "100", "--json", "--out", str(tmp_path / "c"),
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    report = result["candidates"]
    assert result["steps"] == report["steps"] == 8 * 2 + 3 * (STEPS - 2)
    assert report["plain_steps"] == 3 * STEPS and report["previewed"] == 8
    assert [c["seed"] for c in report["candidates"]] == list(range(100, 108))
    kept = [c for c in report["candidates"] if c["kept"]]
    assert len(kept) == 3 and sorted(c["rank"] for c in kept) == [0, 1, 2]
    assert all(c["candidate_distance"] is not None for c in report["candidates"])
    assert len(result["images"]) == 3 and len(set(result["seeds"])) == 3
    for path, seed in zip(result["images"], result["seeds"], strict=True):
        record = read_record(path)
        assert record["seed"] == seed and record["candidates"]["steps"] == result["steps"]
        code, alone, _ = generate(
            capsys, tiny_zimage_dir, "-n", "1", "--seed", str(seed), "--out", str(tmp_path / "p")
        )
        assert code == 0 and np.array_equal(pixels(path), pixels(alone.strip()))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--candidates", "2", "-n", "3"], "2 candidates cannot give 3 images"),
        (["--candidates", "4", "--preview-step", "4"], "preview step 4 is outside 1..3"),
        (["--preview-step", "1"], "a preview step needs candidates"),
        (["--candidates", "4", "--sampler", "dpmpp_2m"], "need the euler sampler"),
    ],
)
def test_bad_candidate_requests_are_one_line_exit_2(capsys, tiny_zimage_dir, args, message):
    code, out, err = generate(capsys, tiny_zimage_dir, *args)
    assert code == 2 and out == ""
    last = err.splitlines()[-1]
    assert last.startswith("zit: error:") and message in last and "Traceback" not in err


def test_previews_like_the_history_are_not_kept(backend, plain_ids, small_options, tmp_path):
    from zit_agent.agent.candidates import render_with_candidates
    from zit_agent.agent.history import HistoryStore
    from zit_agent.backends.embedders import HashEmbedder

    options = small_options.model_copy(update={"steps": STEPS})
    seeds = [200, 201, 202, 203, 204]
    shown = []

    def show_all(previews):
        shown.extend(previews)
        return []

    backend.render_candidates(plain_ids, seeds, options, 2, show_all)
    embedder = HashEmbedder()
    store = HistoryStore.in_memory()
    # The history already holds the previews of the first two seeds (as this user made them).
    for i in (0, 1):
        path = tmp_path / f"made-{i}.png"
        shown[i].save(path)
        row = store.add_image(path, idea="another idea")
        store.vectors([row.content_hash], embedder, lambda _h, img=shown[i]: img)
    kept, report = render_with_candidates(
        backend, embedder, store, plain_ids, seeds, options, keep=3, preview_step=2
    )
    assert report.history == 2
    by_seed = {c.seed: c for c in report.candidates}
    assert by_seed[200].history_distance == by_seed[201].history_distance == 0.0
    assert not by_seed[200].kept and not by_seed[201].kept
    assert sorted(k.seed for k in kept) == [202, 203, 204]


def test_choose_diverse_prefers_far_from_history_and_each_other():
    from zit_agent.agent.candidates import choose_diverse

    a, b, c = np.eye(3)
    vectors = np.stack([a, a * 0.99 + b * 0.01, b, c])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chosen, rows = choose_diverse(vectors, None, 3)
    assert chosen == [0, 2, 3]  # the near-copy of the first is left out
    assert rows[0].kept_distance is None and rows[1].kept is False
    chosen, rows = choose_diverse(vectors, np.stack([c]), 2)
    assert chosen == [0, 2] and rows[3].history_distance == 0.0
