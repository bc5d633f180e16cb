"""The llama.cpp writer: its speed against a raw `Llama.generate` loop, and its thread count.

1. Writer against raw loop: same GGUF, same `Llama` instance (the default threads), same prompt
   ids, same sampling and seed, timed in alternation. The writer's time includes everything
   `write()` does (chat template, tokenizing, generating, splitting and decoding the ids); the raw
   loop only generates. Rates are medians; the ratio is the median of the pair-by-pair ratios.
2. Threads: the default rule (`llama.default_threads`) against 1 thread and against every
   allowed CPU, three instances of the same GGUF timed in alternation; median rates (contention
   is what is measured, and a best-of would hide it), the ratio pair by pair against the fastest
   other count. The figure says which count won here.

Two random Qwen3 GGUFs with the real vocabulary: the tiny one of the tests (hidden 32) and a
mid-size one (hidden 512, float16).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.core import Figure, Timing, benchmark, interleaved, paired

# Short writes for the thread counts: a count that oversubscribes a busy machine can run 40x
# slower (measured here: 13.7 tokens/s with 2 threads, 539 with 1).
THREADS_NEW_TOKENS = 32
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
            name = f"{label} (hidden {hidden}, {layers} layers)"
            repeats = 8 if quick else 12
            figures.append(_compare(name, path, new_tokens, repeats))
            figures.append(_threads(name, path, repeats=3 if quick else 7))
            path.unlink()
    return figures


def _setup(path: Path, new_tokens: int, threads: int | None = None):
    from zit_agent import prompts
    from zit_agent.backends.base import Sampling
    from zit_agent.backends.writers.llama import LlamaCppWriter
    from zit_agent.backends.writers.messages import build_messages

    writer = LlamaCppWriter.from_pretrained(str(path), n_ctx=2048, n_threads=threads)
    return (
        writer,
        build_messages(prompts.load("expand").text, IDEA),
        Sampling(max_new_tokens=new_tokens),
    )


def _compare(name: str, path: Path, new_tokens: int, repeats: int) -> Figure:
    writer, messages, sampling = _setup(path, new_tokens)
    prompt_ids = writer.prompt_ids(writer.prompt(messages))
    counts: dict[str, int] = {}

    def through_writer():
        counts["writer"] = writer.write(messages, sampling, seed=1).stats.new_tokens

    def raw_loop():
        counts["raw"] = len(_raw_generate(writer.llama, prompt_ids, sampling, seed=1))

    samples = _interleaved_samples({"writer": through_writer, "raw": raw_loop}, repeats)
    t = {name: Timing.of(values) for name, values in samples.items()}
    times = paired(t["raw"], t["writer"])  # raw time over writer time: the rates' ratio
    ratio = times.median * counts["writer"] / counts["raw"]
    threads = writer.llama.n_threads
    writer.llama.close()
    return Figure(
        f"llama.cpp writer, {name}",
        counts["writer"] / t["writer"].median,
        "tokens/s",
        counts["raw"] / t["raw"].median,
        "raw Llama.generate loop",
        target="ratio >= 0.95",
        met=ratio >= 0.95,
        spread=times.spread,
        paired_ratio=ratio,
        extra={
            "new_tokens": counts["writer"],
            "prompt_tokens": len(prompt_ids),
            "threads": threads,
            "repeats": repeats,
            "best_of_ratio": min(samples["raw"]) / min(samples["writer"]),
        },
    )


def _threads(name: str, path: Path, repeats: int) -> Figure:
    """Tokens per second (median, the prompt included) with the default threads, with 1 and with
    every allowed CPU; counts that coincide (the default is 1 on 2 cores) are timed once."""
    from zit_agent.backends.cpu import allowed_cpus
    from zit_agent.backends.writers.llama import default_threads

    default = default_threads()
    counts = sorted({default.generation, 1, len(allowed_cpus())})
    writers = {n: _setup(path, THREADS_NEW_TOKENS, n) for n in counts}
    # the default rule's own instance, so its batch count is the rule's too
    writers[default.generation] = _setup(path, THREADS_NEW_TOKENS)
    tokens: dict[int, int] = {}

    def call(n: int):
        writer, messages, sampling = writers[n]
        tokens[n] = writer.write(messages, sampling, seed=1).stats.new_tokens

    samples = _interleaved_samples({n: (lambda n=n: call(n)) for n in counts}, repeats)
    timings = {n: Timing.of(values) for n, values in samples.items()}
    for writer, _, _ in writers.values():
        writer.llama.close()
    rate = {n: tokens[n] / t.median for n, t in timings.items()}
    others = [n for n in counts if n != default.generation]
    best_other = max(others, key=rate.get) if others else default.generation
    fastest = max(rate, key=rate.get)
    ratio = paired(timings[best_other], timings[default.generation])  # of times: rates inverted
    scale = tokens[default.generation] / tokens[best_other]
    return Figure(
        f"writer threads, {name}: default ({default.generation}) vs 1 vs all "
        f"({len(allowed_cpus())})",
        rate[default.generation],
        "tokens/s",
        rate[best_other],
        f"{best_other} thread(s), the fastest other count",
        target="default >= 0.9 x the fastest other",
        met=ratio.median * scale >= 0.9,
        spread=ratio.spread,
        paired_ratio=ratio.median * scale,
        extra={
            "tokens_per_s": {f"{n} threads": round(r, 1) for n, r in rate.items()},
            "fastest": f"{fastest} threads",
            "default": {"generation": default.generation, "batch": default.batch},
            "new_tokens": THREADS_NEW_TOKENS,
            "repeats": repeats,
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
