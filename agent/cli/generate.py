"""`zit generate`: render an idea with Z-Image from token ids, with provenance on every image.

Two paths:
- the plain path (`--writer none --no-ruts` with the Z-Image backend): the idea's plain chat
  sequence, id for id what diffusers would feed the encoder for `prompt=idea`, rendered once;
- the agent path (everything else): the automatic rut-avoiding loop of `agent.graph` (writer,
  render, rut check, escape ladder), with a final table of attempts, or `--json` with `images`,
  `attempts`, `ruts_detected`, `ruts_escaped`, `final_verdict` and `per_attempt`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zit_agent.agent.cli import app
from zit_agent.agent.cli.agent_options import (
    BackendOpt,
    EmbedderOpt,
    LadderOpt,
    MaxAttemptsOpt,
    MaxNewTokensOpt,
    ShapeOpt,
    TemperatureOpt,
    TokenizerOpt,
    WriterOpt,
)
from zit_agent.agent.cli.render_flags import (
    PANEL,
    AttentionOpt,
    BatchOpt,
    CompileOpt,
    CpuOffloadOpt,
    DeviceOpt,
    DtypeOpt,
    GuidanceOpt,
    ImageModelOpt,
    LayerOpt,
    LoraOpt,
    NegativeOpt,
    NoiseFractionOpt,
    NoiseOpt,
    NoiseSeedOpt,
    NoiseStepsOpt,
    SamplerOpt,
    SeedOpt,
    ShiftOpt,
    SizeOpt,
    StepsOpt,
    TextEncoderOpt,
    TransformerOpt,
    VaeOpt,
)

DEFAULT_RUT_COUNT = 4


@app.command()
def generate(
    idea: Annotated[str, typer.Argument(help="What to picture.")],
    writer: WriterOpt = None,
    ruts: Annotated[
        bool, typer.Option("--ruts/--no-ruts", help="Detect and escape ruts across seeds.")
    ] = True,
    backend_kind: BackendOpt = None,
    max_attempts: MaxAttemptsOpt = 5,
    shape: ShapeOpt = None,
    ladder: LadderOpt = None,
    temperature: TemperatureOpt = None,
    max_new_tokens: MaxNewTokensOpt = None,
    embedder: EmbedderOpt = None,
    tokenizer: TokenizerOpt = None,
    image_model: ImageModelOpt = None,
    count: Annotated[
        int | None,
        typer.Option(
            "-n",
            "--count",
            min=1,
            rich_help_panel=PANEL,
            help="Images per attempt (default: 4 when checking for ruts, else 1).",
        ),
    ] = None,
    seed: SeedOpt = None,
    size: SizeOpt = None,
    steps: StepsOpt = None,
    guidance: GuidanceOpt = None,
    negative: NegativeOpt = None,
    layer: LayerOpt = None,
    sampler: SamplerOpt = None,
    shift: ShiftOpt = None,
    lora: LoraOpt = None,
    noise: NoiseOpt = None,
    noise_fraction: NoiseFractionOpt = None,
    noise_steps: NoiseStepsOpt = None,
    noise_seed: NoiseSeedOpt = None,
    text_encoder: TextEncoderOpt = None,
    vae: VaeOpt = None,
    transformer: TransformerOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    cpu_offload: CpuOffloadOpt = False,
    attention: AttentionOpt = None,
    compile: CompileOpt = False,
    batch: BatchOpt = 4,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: ZIT_HOME/outputs).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Render IDEA, avoiding ruts: the writer describes it, the images are checked for a rut
    across seeds, and the escape ladder varies the prompt until they differ (up to
    --max-attempts). With --writer none --no-ruts: the idea's plain sequence, rendered once.
    Each PNG carries its provenance (and a JSON file beside it)."""
    from rich.console import Console

    from zit_agent.agent.cli.agent_options import parts_spec, run_automatic, writer_sampling
    from zit_agent.agent.cli.common import print_json
    from zit_agent.agent.cli.render_flags import build_backend, render_choice, with_negative
    from zit_agent.backends.provenance import save_rendered
    from zit_agent.backends.tokenizer import QwenTokenizer
    from zit_agent.errors import UserError
    from zit_agent.sequence import ChatSequence, assemble
    from zit_agent.settings import load_settings

    # 1. Parse
    if not idea.strip():
        raise UserError("the idea is empty", hint="give an idea with some words in it")
    # 2. Settings (a rut shows across seeds: compare 4 images unless told otherwise)
    count = count or (DEFAULT_RUT_COUNT if ruts else 1)
    settings = load_settings(image_model=image_model)
    choice = render_choice(
        settings, count=count, seed=seed, size=size, steps=steps, guidance=guidance,
        negative=negative, layer=layer, sampler=sampler, shift=shift, lora=lora, noise=noise,
        noise_fraction=noise_fraction, noise_steps=noise_steps, noise_seed=noise_seed,
        text_encoder=text_encoder, vae=vae, transformer=transformer, device=device, dtype=dtype,
        cpu_offload=cpu_offload, attention=attention, compile=compile, batch=batch,
    )  # fmt: skip
    spec = parts_spec(
        settings, writer=writer, backend=backend_kind, tokenizer=tokenizer, embedder=embedder
    )
    if spec.writer is not None or ruts or spec.backend != "zimage" or shape or ladder:
        # The agent path: the automatic rut-avoiding loop (agent.graph).
        console = Console(stderr=True, quiet=as_json)
        result = run_automatic(
            idea, settings, spec, choice, shape=shape, max_attempts=max_attempts, ruts=ruts,
            ladder=ladder, sampling=writer_sampling(temperature, max_new_tokens), out=out,
            console=console, quiet=as_json,
        )  # fmt: skip
        if as_json:
            print_json(result)
        else:
            print("\n".join(result["images"]))
        return
    # 3. Build the backend; assemble the plain sequence
    backend = build_backend(choice.backend)
    tok = (
        QwenTokenizer.from_pretrained(spec.tokenizer, download=settings.download)
        if spec.tokenizer
        else backend.tokenizer
    )
    budget = settings.render.max_tokens
    sequence = assemble(ChatSequence.plain(idea), tok, max_tokens=budget)
    options = with_negative(choice, tok, budget)
    # 4. Render
    rendered = backend.render(sequence.ids, choice.seeds, options)
    # 5. Save and print
    paths = save_rendered(rendered, out or settings.outputs_dir, idea=idea)
    if as_json:
        print_json(
            {
                "images": [str(p) for p in paths],
                "seeds": choice.seeds,
                "token_count": sequence.count,
                "model": choice.backend.model,
                "options": options.model_dump(exclude={"negative_ids"}),
                "negative": choice.negative,
            }
        )
        return
    for path in paths:
        print(path)
