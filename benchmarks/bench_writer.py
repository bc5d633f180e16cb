"""The llama.cpp writer's generation speed against a raw `Llama.generate` loop.

Same GGUF, same `Llama` instance, same prompt ids, same sampling and seed; the two are timed in
alternation. The writer's time includes everything `write()` does (rendering the chat template,
tokenizing, generating, splitting and decoding the ids); the raw loop only generates. Two random
Qwen3 GGUFs with the real vocabulary: the tiny one of the tests (hidden 32) and a mid-size one
(hidden 512, float16). Threads: half the cores. Rates are best-of-N (the median ratio is in
`extra`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmarks.core import Figure, Timing, benchmark, interleaved

# Half the cores (llama-cpp-python's own default): on a shared machine all-core spin waits make
# the timings erratic; both sides use the same count, so the ratio is unaffected.
THREADS = max(1, (os.cpu_count() or 2) // 2)
IDEA = "an old fisherman mending nets on a pier at dawn, fog over the harbour"


@benchmark("writer")
def writer_speed(quick: bool) -> list[Figure]:
    from zit_agent.backends.tiny.qwen3 import build_tiny_qwen3_gguf

    sizes = [
        ("tiny", 32, 4, 128 if quick else 256),
        ("mid", 512, 2 if quick else 8, 32 if quick else 160),
    ]
    figures = []
    with tempfile.TemporaryDirectory(prefix="zit-bench-writer-") as tmp:
        for label, hidden, layers, new_tokens in sizes:
            path = build_tiny_qwen3_gguf(
                Path(tmp) / f"{label}.gguf", hidden_size=hidden, layers=layers, f16=hidden >= 512
            )
            figures.append(
                _compare(label, path, hidden, layers, new_tokens, repeats=8 if quick else 12)
            )
            path.unlink()
    return figures


def _compare(label: str, path: Path, hidden: int, layers: int, new_tokens: int, repeats: int):
    from zit_agent import prompts
    from zit_agent.backends.base import Sampling
    from zit_agent.backends.writers.llama import LlamaCppWriter
    from zit_agent.backends.writers.messages import build_messages

    writer = LlamaCppWriter.from_pretrained(str(path), n_ctx=2048, n_threads=THREADS)
    messages = build_messages(prompts.load("expand").text, IDEA)
    sampling = Sampling(max_new_tokens=new_tokens)
    prompt_ids = writer.prompt_ids(writer.prompt(messages))
    counts: dict[str, int] = {}

    def through_writer():
        counts["writer"] = writer.write(messages, sampling, seed=1).stats.new_tokens

    def raw_loop():
        counts["raw"] = len(_raw_generate(writer.llama, prompt_ids, sampling, seed=1))

    samples = _interleaved_samples({"writer": through_writer, "raw": raw_loop}, repeats)
    t = {name: Timing.of(values) for name, values in samples.items()}
    # Best of the repeats: the same deterministic work each time, so the fastest run is the one
    # least disturbed by other processes (medians are kept in `extra`).
    writer_rate = counts["writer"] / min(samples["writer"])
    raw_rate = counts["raw"] / min(samples["raw"])
    writer.llama.close()
    return Figure(
        f"llama.cpp writer, {label} (hidden {hidden}, {layers} layers)",
        writer_rate,
        "tokens/s",
        raw_rate,
        "raw Llama.generate loop",
        target="ratio >= 0.95",
        met=writer_rate / raw_rate >= 0.95,
        spread=max(t["writer"].spread, t["raw"].spread),
        extra={
            "new_tokens": counts["writer"],
            "prompt_tokens": len(prompt_ids),
            "threads": THREADS,
            "repeats": repeats,
            "median_ratio": t["raw"].median / t["writer"].median,
        },
    )


def _interleaved_samples(fns, repeats: int) -> dict[str, list[float]]:
    """Every timing of `interleaved`'s alternation (one warm-up round first)."""
    rounds = [interleaved(fns, repeats=1, warmup=int(i == 0)) for i in range(repeats)]
    return {name: [r[name].median for r in rounds] for name in fns}


def _raw_generate(llama, prompt_ids: list[int], sampling, seed: int) -> list[int]:
    """What a caller of llama-cpp-python writes by hand: seed, generate, stop on end of turn."""
    stops = {llama.token_eos(), 151643}
    llama.set_seed(seed)
    out: list[int] = []
    for token in llama.generate(
        prompt_ids,
        temp=sampling.temperature,
        top_k=sampling.top_k,
        top_p=sampling.top_p,
        min_p=sampling.min_p,
        repeat_penalty=sampling.repeat_penalty,
    ):
        out.append(token)
        if token in stops or len(out) >= sampling.max_new_tokens:
            break
    return out
