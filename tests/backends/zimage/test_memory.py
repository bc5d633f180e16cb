"""The memory plan: stage peaks from the files' sizes, offload / tiling / refusal per VRAM size.

The real model's sizes come from header-only safetensors files (the plan reads headers, never
weights): Z-Image-Turbo's 6.15 B-parameter DiT, the 4.02 B Qwen3-4B encoder, the 84 M Flux VAE.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from zit_agent.backends.memory import GIB, parse_vram, plan_memory
from zit_agent.errors import UserError

DIT, ENCODER, VAE = 6_154_908_736, 4_022_468_096, 83_819_683
CONFIGS = {
    "transformer": {"dim": 3840},
    "text_encoder": {"hidden_size": 2560, "num_hidden_layers": 36, "intermediate_size": 9728},
    "vae": {"block_out_channels": [128, 256, 512, 512], "sample_size": 1024},
}


def header_file(path: Path, tensors: dict[str, int], dtype: str = "BF16") -> Path:
    """A safetensors file describing `tensors` (name: element count); its data is a hole (a sparse
    file: the header's offsets are in the file, no disk blocks are used)."""
    size = {"BF16": 2, "F32": 4, "F8_E4M3": 1}[dtype]
    header, at = {}, 0
    for name, count in tensors.items():
        header[name] = {"dtype": dtype, "shape": [count], "data_offsets": [at, at + count * size]}
        at += count * size
    data = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(len(data).to_bytes(8, "little") + data)
        fh.truncate(8 + len(data) + at)
    return path


def sparse_file(path: Path, size: int) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(size)  # no disk blocks: the plan only looks at the size
    return path


@pytest.fixture(scope="module")
def real_sized(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("z-image-turbo")
    (root / "model_index.json").write_text("{}")
    for part, count in (("transformer", DIT), ("text_encoder", ENCODER), ("vae", VAE)):
        (root / part).mkdir()
        (root / part / "config.json").write_text(json.dumps(CONFIGS[part]))
        header_file(root / part / "model.safetensors", {"weight": count})
    return root


@pytest.fixture(scope="module")
def gguf_dit(tmp_path_factory) -> Path:
    return sparse_file(
        tmp_path_factory.mktemp("gguf") / "z_image_turbo-Q4_K_M.gguf", int(DIT * 4.5 / 8)
    )


@pytest.fixture(scope="module")
def hf_writer_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("Qwen3-4B")
    header_file(folder / "model.safetensors", {"weight": ENCODER})
    return folder


def test_24_gb_keeps_everything_resident(real_sized):
    plan = plan_memory("24", model=real_sized)
    assert plan.fits and plan.backend_options() == {"cpu_offload": False, "vae_tiling": False}
    assert plan.parts["transformer"].bytes == DIT * 2  # bf16 on the card
    assert [s.stage for s in plan.stages] == ["text_encoder", "transformer", "vae"]
    assert all(s.weights == (DIT + ENCODER + VAE) * 2 for s in plan.stages)


def test_24_gb_with_a_bf16_qwen3_writer_offloads_in_load_order(real_sized, hf_writer_dir):
    plan = plan_memory("24", model=real_sized, writer=f"hf:{hf_writer_dir}")
    assert plan.fits and plan.cpu_offload and plan.writer_on_device
    assert [s.stage for s in plan.stages] == ["writer", "text_encoder", "transformer", "vae"]
    dit = next(s for s in plan.stages if s.stage == "transformer")
    assert dit.weights == (DIT + ENCODER) * 2  # the DiT beside the resident writer
    lines = plan.lines()
    assert lines[0].startswith("memory plan for 24 GB (cuda): model CPU offload")
    assert [line.split()[1] for line in lines[1:5]] == ["writer", "text", "transformer", "VAE"]


def test_16_gb_offloads_and_each_stage_fits(real_sized):
    plan = plan_memory("16", model=real_sized)
    assert plan.fits and plan.cpu_offload and not plan.vae_tiling
    assert max(s.peak for s in plan.stages) < 16 * GIB
    plan.check()


def test_8_gb_with_the_bf16_dit_is_refused_naming_the_way_out(real_sized):
    plan = plan_memory("8", model=real_sized)
    assert not plan.fits
    with pytest.raises(UserError) as err:
        plan.check()
    line = err.value.one_line()
    assert "the text encoder needs about" in line or "the transformer needs about" in line
    assert "\n" not in line


def test_12_gb_refuses_the_bf16_dit_and_suggests_a_gguf_one(real_sized, gguf_dit):
    plan = plan_memory("12", model=real_sized)
    assert plan.failing == "transformer"
    assert "GGUF-quantized transformer file (Q8_0 about 6.1 GiB, Q4_K about 3.2 GiB)" in plan.hint
    quantized = plan_memory("12", model=real_sized, transformer=str(gguf_dit))
    assert quantized.fits and quantized.parts["transformer"].bytes == gguf_dit.stat().st_size
    assert "quantized transformer" in quantized.lines()[0]


def test_a_writer_that_does_not_fit_beside_the_stages_moves_to_the_cpu(
    real_sized, gguf_dit, hf_writer_dir
):
    plan = plan_memory(
        "12", model=real_sized, transformer=str(gguf_dit), writer=f"hf:{hf_writer_dir}"
    )
    assert plan.fits and not plan.writer_on_device
    assert "writer" not in [s.stage for s in plan.stages]
    assert "runs on the CPU" in plan.lines()[-1]


def test_the_encoder_as_writer_costs_nothing(real_sized):
    plan = plan_memory("24", model=real_sized, writer="encoder")
    assert plan.parts["writer"].bytes == 0 and not plan.cpu_offload


def test_a_large_image_turns_vae_tiling_on(real_sized, gguf_dit):
    plan = plan_memory("12", model=real_sized, transformer=str(gguf_dit), width=4096, height=4096)
    assert plan.fits and plan.vae_tiling and plan.backend_options()["vae_tiling"]
    small = plan_memory("12", model=real_sized, transformer=str(gguf_dit))
    assert not small.vae_tiling


def test_an_fp8_file_counts_at_the_dtype_it_is_upcast_to(real_sized, tmp_path):
    fp8 = header_file(
        tmp_path / "z_image_turbo_fp8_e4m3fn.safetensors",
        {"cap_embedder.1.weight": 3840 * 2560, "t_embedder.mlp.0.weight": DIT - 3840 * 2560},
        dtype="F8_E4M3",
    )
    plan = plan_memory("24", model=real_sized, transformer=str(fp8))
    assert plan.parts["transformer"].bytes == DIT * 2


def test_an_all_in_one_checkpoint_is_split_into_its_parts(real_sized, tmp_path):
    aio = header_file(
        tmp_path / "JoZiMagic.safetensors",
        {
            "model.diffusion_model.cap_embedder.1.weight": DIT - 1,
            "model.diffusion_model.t_embedder.mlp.0.weight": 1,
            "te.model.embed_tokens.weight": ENCODER - 1,
            "te.model.layers.0.self_attn.q_proj.weight": 1,
            "vae.decoder.conv_in.weight": VAE - 1,
            "vae.encoder.conv_in.weight": 1,
        },
    )
    plan = plan_memory("16", model=real_sized, checkpoint=str(aio))
    sizes = {k: p.bytes // 2 for k, p in plan.parts.items()}
    assert sizes == {"text_encoder": ENCODER, "transformer": DIT, "vae": VAE}


def test_the_tiny_models_sizes_equal_its_loaded_parameters(tiny_zimage_dir):
    from zit_agent.backends.zimage import ZImageBackend

    plan = plan_memory("full", model=tiny_zimage_dir, dtype="fp32")
    backend = ZImageBackend.from_pretrained(tiny_zimage_dir, **plan.backend_options())
    for part in ("transformer", "text_encoder", "vae"):
        module = getattr(backend.pipe, part)
        assert plan.parts[part].bytes == 4 * sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "text, expected",
    [("12", (12 * GIB, "12 GB")), ("24GB", (24 * GIB, "24 GB")), ("full", (None, "full memory"))],
)
def test_vram_values(text, expected):
    assert parse_vram(text) == expected


def test_auto_without_an_accelerator_plans_for_the_cpu(tiny_zimage_dir):
    assert parse_vram("auto") == (None, "the CPU (no accelerator found)")
    plan = plan_memory("auto", model=tiny_zimage_dir)
    assert plan.device == "cpu" and plan.fits and "offload does not apply" in plan.lines()[-1]


@pytest.mark.parametrize("text", ["lots", "0", "-8"])
def test_a_bad_vram_value_is_a_user_error(text):
    with pytest.raises(UserError, match="unknown VRAM size"):
        parse_vram(text)


def test_missing_files_are_named(real_sized):
    with pytest.raises(UserError, match="no file"):
        plan_memory("16", model=real_sized, transformer="/no/such/dit.safetensors")
    assert os.path.isdir(real_sized)
