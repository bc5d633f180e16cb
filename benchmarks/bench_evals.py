"""The eval runner's own cost: its jobs (keys, journal, provenance records) against the bare work
(assemble, render, save with provenance) on the sketch stand-in, and the report's time per image."""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path

from benchmarks.core import Figure, benchmark, interleaved, paired

IDEAS = ["a red fox", "a bowl of ramen", "a lighthouse", "an old typewriter", "a barn owl",
         "a blue teapot", "a desert road", "a chess board"]  # fmt: skip


def _suite(ideas: int, seeds: int):
    from zit_agent.evals.suite import Suite

    return Suite.model_validate(
        {
            "name": "bench",
            "seeds": list(range(seeds)),
            "fidelity": "attributes",
            "backend": {"kind": "sketch", "width": 128, "height": 128},
            "ideas": [{"id": f"i{n}", "text": text} for n, text in enumerate(IDEAS[:ideas])],
            "configs": {"raw": {"strategy": "raw"}},
        }
    )


@benchmark("eval")
def eval_runner(quick: bool) -> list[Figure]:
    from zit_agent.backends.provenance import ImageRecord, save_image
    from zit_agent.evals.report import write_report
    from zit_agent.evals.runner import RunContext, RunFolder, plan, run_job
    from zit_agent.sequence import ChatSequence, assemble

    suite = _suite(ideas=4 if quick else 8, seeds=2 if quick else 4)
    run = RunContext(suite)
    jobs = plan(suite)
    images = sum(len(j.seeds) for j in jobs)
    root = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    fresh = (root / f"r{n}" for n in itertools.count())

    def bare() -> None:
        out = next(fresh)
        for idea in suite.ideas:
            ids = assemble(ChatSequence.plain(idea.text), run.tokenizer).ids
            for seed in suite.seeds:
                [img] = run.runner.render(ids, [seed], run.render_options(suite.configs["raw"]))
                record = ImageRecord.of(img.record, img.seed, idea=idea.text)
                save_image(img.image, record, out, f"{idea.id}-s{seed}")

    last: list[RunFolder] = []

    def runner() -> None:
        folder = RunFolder(next(fresh))
        for job in jobs:
            run_job(job, run, folder)
        last[:] = [folder]

    t = interleaved({"bare": bare, "runner": runner}, repeats=5 if quick else 11)
    ratio = paired(t["runner"], t["bare"])
    start = time.perf_counter()
    folder = last[0]
    write_report(folder.root, suite, [folder.journal(j) for j in jobs], run)
    report = (time.perf_counter() - start) / images
    per_image = t["runner"].median / images
    return [
        Figure(
            "eval jobs per image vs bare render+save",
            per_image,
            "s",
            baseline=t["bare"].median / images,
            baseline_name="assemble + render + save_image",
            target="ratio <= 1.10",
            met=ratio.median <= 1.10,
            spread=ratio.spread,
            paired_ratio=ratio.median,
            extra={
                "images": images,
                "size": "128x128",
                "repeats": ratio.repeats,
                "ratio_of_medians": round(t["runner"].median / t["bare"].median, 4),
            },
        ),
        Figure(
            "eval report per image (metrics, plot, contact sheets)",
            report,
            "s",
            extra={"images": images, "embedder": "hash"},
        ),
    ]
