"""Z-Image (base) vs Turbo: detected from the files, rendered with the variant's own defaults."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tests.backends.zimage.conftest import IDEA
from zit_agent.backends.base import RenderOptions
from zit_agent.backends.variants import detect_variant, variant_defaults, variant_options
from zit_agent.backends.zimage import ZImageBackend
from zit_agent.defaults import VARIANTS
from zit_agent.errors import UserError

TINY = {"width": 64, "height": 64}


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, tokenizer_dir):
    from zit_agent.backends.tiny.zimage import build_tiny_zimage

    return build_tiny_zimage(tmp_path_factory.mktemp("tiny-base"), tokenizer_dir, variant="base")


@pytest.fixture(scope="module")
def base_backend(base_dir):
    return ZImageBackend.from_pretrained(base_dir)


def test_the_variant_is_read_from_the_scheduler_config(base_backend, backend):
    assert (base_backend.variant, base_backend.variant_source) == ("base", "scheduler shift 6")
    assert (backend.variant, backend.variant_source) == ("turbo", "scheduler shift 3")


def test_a_given_variant_wins(base_dir):
    assert ZImageBackend.from_pretrained(base_dir, variant="turbo").variant == "turbo"
    with pytest.raises(UserError, match="unknown model variant 'edit'"):
        ZImageBackend.from_pretrained(base_dir, variant="edit")


@pytest.mark.parametrize(
    "names, expected",
    [
        (
            ["z_image_turbo_bf16.safetensors", "folder"],
            ("turbo", "file name z_image_turbo_bf16.safetensors"),
        ),
        (
            ["z_image_base_bf16.safetensors", "folder"],
            ("base", "file name z_image_base_bf16.safetensors"),
        ),
        (["JoZiMagic.safetensors", "folder"], ("base", "scheduler shift 6")),
        (["Tongyi-MAI/Z-Image-Turbo"], ("base", "scheduler shift 6")),
    ],
)
def test_a_weight_file_name_comes_before_the_folder(base_dir, names, expected):
    assert detect_variant(base_dir, names=names) == expected


def test_without_a_scheduler_config_the_model_name_decides(tmp_path):
    assert detect_variant(tmp_path, names=["Tongyi-MAI/Z-Image-Turbo"]) == (
        "turbo",
        "model name Tongyi-MAI/Z-Image-Turbo",
    )
    assert detect_variant(tmp_path, names=["my-model"]) == ("turbo", "default")


def test_variant_options_set_only_the_variant_fields():
    given = RenderOptions(width=512, height=768, layer=-3)
    base = variant_options("base", given)
    found = VARIANTS["base"]
    assert (base.steps, base.guidance, base.shift, base.cfg_normalization) == (
        found.steps,
        found.guidance,
        found.shift,
        True,
    )
    assert (base.width, base.height, base.layer) == (512, 768, -3)
    turbo = variant_options("turbo")
    assert (turbo.steps, turbo.guidance, turbo.cfg_normalization) == (8, 0.0, False)
    assert variant_defaults("base").negative == ""


def test_base_renders_with_base_defaults_like_diffusers_and_records_them(
    base_backend, base_dir, qwen_tokenizer
):
    from diffusers import ZImagePipeline

    from zit_agent.sequence import ChatSequence, assemble

    ids = assemble(ChatSequence.plain(IDEA), qwen_tokenizer).ids
    options = base_backend.default_options(RenderOptions(**TINY))
    rendered = base_backend.render(ids, [4], options)[0]
    pipe = ZImagePipeline.from_pretrained(base_dir)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        prompt=IDEA,
        **TINY,
        num_inference_steps=VARIANTS["base"].steps,
        guidance_scale=VARIANTS["base"].guidance,
        cfg_normalization=True,
        generator=torch.Generator().manual_seed(4),
    ).images[0]
    assert np.array_equal(np.asarray(rendered.image), np.asarray(expected))
    record = rendered.record
    assert (record["variant"], record["variant_source"]) == ("base", "scheduler shift 6")
    assert (record["steps"], record["guidance"], record["shift"], record["cfg_normalization"]) == (
        28,
        4.0,
        6.0,
        True,
    )


def test_cfg_normalization_changes_a_guided_render(base_backend, plain_ids):
    options = base_backend.default_options(RenderOptions(**TINY, steps=4))
    on = base_backend.render(plain_ids, [1], options)[0].image
    off = base_backend.render(
        plain_ids, [1], options.model_copy(update={"cfg_normalization": False})
    )[0].image
    assert not np.array_equal(np.asarray(on), np.asarray(off))


def test_base_with_turbo_settings_warns(base_backend, plain_ids, caplog):
    with caplog.at_level(logging.WARNING, logger="zit.zimage"):
        base_backend.render(plain_ids, [1], RenderOptions(**TINY, steps=2))
    assert "Z-Image (base) with CFG off" in caplog.text
