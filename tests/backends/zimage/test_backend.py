"""ZImageBackend on a tiny random Z-Image: token ids in, the same images as diffusers out."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from tests.backends.test_schedules import COMFY_8_STEPS_SHIFT_3
from tests.backends.zimage.conftest import IDEA, SMALL
from zit_agent.backends.base import ImageBackend, NoiseSettings
from zit_agent.backends.samplers import SAMPLERS
from zit_agent.errors import ModelNotFoundError, UserError


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def same(a, b) -> bool:
    return np.array_equal(pixels(a), pixels(b))


def reference(pipe, seed: int | list[int], **kwargs):
    """diffusers' own prompt-string path: `seed` alone, or (a list) those seeds as one batch."""
    seeds = seed if isinstance(seed, list) else [seed]
    args = {
        "height": SMALL["height"],
        "width": SMALL["width"],
        "num_inference_steps": SMALL["steps"],
        "num_images_per_prompt": len(seeds),
    }
    args |= {"guidance_scale": 0.0, **kwargs}
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    images = pipe(prompt=IDEA, generator=generators, **args).images
    return images if isinstance(seed, list) else images[0]


@pytest.fixture(scope="module")
def baseline(backend, plain_ids, small_options):
    return backend.render(plain_ids, [7], small_options)[0].image


def test_is_an_image_backend(backend):
    assert isinstance(backend, ImageBackend)


def test_plain_idea_equals_diffusers_prompt_path_pixel_for_pixel(
    backend, raw_pipe, plain_ids, small_options
):
    images = backend.render(plain_ids, [7, 8], small_options)  # one batch of two seeds
    assert [r.seed for r in images] == [7, 8]
    # Against diffusers' batch of the same seeds (a seed alone may differ by one 8-bit level from
    # the same seed in a batch: FACTS.md section 10), and each seed alone against its render alone.
    for rendered, theirs in zip(images, reference(raw_pipe, [7, 8]), strict=True):
        assert same(rendered.image, theirs)
    assert same(backend.render(plain_ids, [8], small_options)[0].image, reference(raw_pipe, 8))
    assert not same(images[0].image, images[1].image)
    assert [r.record["batch"] for r in images] == [{"seeds": [7, 8], "index": i} for i in (0, 1)]


def test_a_batch_rendered_again_gives_its_images_whatever_max_batch_says(
    backend, plain_ids, small_options
):
    batch = backend.render(plain_ids, [7, 8], small_options)
    before = backend.max_batch
    backend.max_batch = 1
    try:
        alone = backend.render(plain_ids, [7, 8], small_options)  # two batches of one
        again = backend.render_batch(plain_ids, [7, 8], 1, small_options)
    finally:
        backend.max_batch = before
    assert [r.record["batch"] for r in alone] == [{"seeds": [s], "index": 0} for s in (7, 8)]
    assert again.record["batch"] == {"seeds": [7, 8], "index": 1} and again.seed == 8
    assert same(again.image, batch[1].image)
    assert backend.max_batch == before


def test_guidance_with_default_negative_equals_diffusers(
    backend, raw_pipe, plain_ids, small_options
):
    options = small_options.model_copy(update={"guidance": 3.0})
    image = backend.render(plain_ids, [7], options)[0].image
    assert same(image, reference(raw_pipe, 7, guidance_scale=3.0))


def test_another_layer_gives_another_image(backend, plain_ids, small_options, baseline):
    other = backend.render(plain_ids, [7], small_options.model_copy(update={"layer": -3}))[0]
    assert not same(other.image, baseline)
    assert other.record["layer"] == -3


def test_repeated_sequence_skips_the_encoder(backend, plain_ids, small_options):
    options = small_options.model_copy(update={"layer": 1})
    first = backend.render(plain_ids, [1], options)[0].record["timings"]
    again = backend.render(plain_ids, [2], options)[0].record["timings"]
    assert (first["encode_cached"], again["encode_cached"]) == (False, True)


def test_noise_strength_zero_is_the_baseline(backend, plain_ids, small_options, baseline):
    options = small_options.model_copy(update={"noise": NoiseSettings(strength=0.0)})
    assert same(backend.render(plain_ids, [7], options)[0].image, baseline)


def test_noise_changes_the_image_reproducibly_and_is_recorded(
    backend, plain_ids, small_options, baseline
):
    noise = NoiseSettings(strength=2.0, fraction=0.5, steps_share=0.5, seed=4)
    options = small_options.model_copy(update={"noise": noise})
    first, again = (backend.render(plain_ids, [7], options)[0] for _ in range(2))
    assert not same(first.image, baseline)
    assert same(first.image, again.image)
    assert first.record["noise"] == noise.model_dump()


def test_lora_strength_zero_is_baseline_and_one_changes_the_image(
    backend, plain_ids, small_options, baseline, lora_file
):
    def render(strength):
        options = small_options.model_copy(
            update={"lora": str(lora_file), "lora_strength": strength}
        )
        return backend.render(plain_ids, [7], options)[0]

    assert same(render(0.0).image, baseline)
    with_lora = render(1.0)
    assert not same(with_lora.image, baseline)
    assert with_lora.record["lora_strength"] == 1.0
    assert with_lora.record["lora"].endswith(lora_file.name)
    # Without a LoRA the loaded adapter is switched off again.
    assert same(backend.render(plain_ids, [7], small_options)[0].image, baseline)


def test_stacked_loras_warn(backend, plain_ids, small_options, lora_file, caplog):
    options = small_options.model_copy(
        update={
            "lora": str(lora_file),
            "extra_loras": [(str(lora_file.parent / "copy.safetensors"), 0.5)],
        }
    )
    (lora_file.parent / "copy.safetensors").write_bytes(lora_file.read_bytes())
    with caplog.at_level("WARNING", logger="zit.zimage"):
        rendered = backend.render(plain_ids, [7], options)[0]
    assert "stacking 2 LoRAs" in caplog.text
    assert rendered.record["extra_loras"][0][1] == 0.5


def test_pickle_lora_is_refused(backend, plain_ids, small_options, tmp_path):
    evil = tmp_path / "lora.ckpt"
    torch.save({"w": torch.zeros(1)}, evil)
    with pytest.raises(UserError, match="pickle"):
        backend.render(plain_ids, [0], small_options.model_copy(update={"lora": str(evil)}))


def test_unreadable_lora_is_a_user_error(backend, plain_ids, small_options, tmp_path):
    junk = tmp_path / "lora.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="not a readable safetensors"):
        backend.render(plain_ids, [0], small_options.model_copy(update={"lora": str(junk)}))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_runs_reproducibly_and_is_recorded(backend, plain_ids, small_options, name):
    options = small_options.model_copy(update={"sampler": name, "steps": 3})
    first, again = (backend.render(plain_ids, [5, 6], options) for _ in range(2))
    assert all(same(a.image, b.image) for a, b in zip(first, again, strict=True))
    assert first[0].record["sampler"] == name
    assert first[0].record["shift"] == 3.0


def test_shift_override_changes_the_image(backend, plain_ids, small_options, baseline):
    rendered = backend.render(plain_ids, [7], small_options.model_copy(update={"shift": 1.0}))[0]
    assert rendered.record["shift"] == 1.0
    assert not same(rendered.image, baseline)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"width": 72}, "not a multiple of 16"),
        ({"height": 0}, "out of range"),
        ({"layer": 5}, "out of range for a 4-layer"),
        ({"layer": -6}, "out of range for a 4-layer"),
        ({"steps": 0}, "below 1"),
        ({"sampler": "dpm"}, "unknown sampler"),
        ({"lora": "x.safetensors", "lora_strength": 2.5}, "out of range"),
        ({"negative_ids": [151936], "guidance": 2.0}, "outside the encoder's vocabulary"),
    ],
)
def test_bad_options_are_user_errors(backend, plain_ids, small_options, update, message):
    with pytest.raises(UserError, match=message):
        backend.render(plain_ids, [0], small_options.model_copy(update=update))


def test_ids_outside_the_vocabulary_are_a_user_error(backend, small_options):
    with pytest.raises(UserError, match=r"outside the encoder's vocabulary .*\[151936"):
        backend.render([151644, 151936, 198], [0], small_options)


def test_sizes_above_2048_warn(caplog):
    from zit_agent.backends.zimage import check_size

    with caplog.at_level("WARNING", logger="zit.zimage"):
        check_size(2304, 1024)
    assert "quality drops" in caplog.text


def test_missing_model_names_the_repo_and_the_download_command():
    from zit_agent.backends.zimage import ZImageBackend

    with pytest.raises(ModelNotFoundError) as err:
        ZImageBackend.from_pretrained("Nobody/No-Such-Z-Image")
    assert "Nobody/No-Such-Z-Image" in err.value.one_line()
    assert "hf download Nobody/No-Such-Z-Image" in err.value.one_line()


def test_folder_without_model_index_is_refused(tmp_path):
    from zit_agent.backends.zimage import ZImageBackend

    with pytest.raises(ModelNotFoundError, match="model_index.json"):
        ZImageBackend.from_pretrained(tmp_path)


def test_embeddings_equal_diffusers_encode_prompt_exactly(backend, raw_pipe, plain_ids):
    theirs, _ = raw_pipe.encode_prompt(IDEA, do_classifier_free_guidance=False)
    mine, _ = backend.encode(plain_ids, -2)
    assert torch.equal(mine, theirs[0])


def test_stochastic_sampler_image_depends_only_on_its_seed(backend, plain_ids, small_options):
    options = small_options.model_copy(update={"sampler": "euler_a", "steps": 3})
    together = backend.render(plain_ids, [5, 6], options)
    swapped = backend.render(plain_ids, [6, 5], options)  # the seeds in other places
    alone = backend.render(plain_ids, [6], options)[0]

    # Elsewhere in a batch or alone, a seed's pixels may move by one 8-bit level (FACTS.md section
    # 10: kernels may take another path for another batch shape or row); step noise drawn per
    # place in the batch instead of per seed would change the image far more.
    def close(a, b) -> bool:
        return np.abs(pixels(a) - pixels(b)).max() <= 1

    assert close(together[1].image, swapped[0].image) and close(together[1].image, alone.image)
    assert close(together[0].image, swapped[1].image)
    assert not close(together[0].image, together[1].image)


# -- schedulers, samplers, shift --------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(COMFY_8_STEPS_SHIFT_3))
def test_each_scheduler_records_comfyuis_sigmas_in_the_png_and_the_json(
    backend, plain_ids, small_options, name, tmp_path
):
    from zit_agent.backends.provenance import read_record, save_rendered

    options = small_options.model_copy(update={"scheduler": name, "steps": 8, "shift": 3.0})
    rendered = backend.render(plain_ids, [7], options)
    png = save_rendered(rendered, tmp_path, idea=IDEA)[0]
    for record in (read_record(png), json.loads(png.with_suffix(".json").read_text())):
        assert record["scheduler"] == name
        assert np.allclose(record["sigmas"], COMFY_8_STEPS_SHIFT_3[name], rtol=0, atol=1e-4)
    assert "Schedule type: " + name in Image.open(png).text["parameters"]


def test_schedulers_change_the_image(backend, plain_ids, small_options):
    images = [
        backend.render(plain_ids, [7], small_options.model_copy(update={"scheduler": name}))[0]
        for name in ("simple", "beta", "bong_tangent")
    ]
    assert not same(images[0].image, images[1].image)
    assert not same(images[0].image, images[2].image)


def test_er_sde_is_reproducible_and_differs_from_euler(backend, plain_ids, small_options):
    options = small_options.model_copy(update={"sampler": "er_sde", "steps": 8})
    first, again = (backend.render(plain_ids, [11], options)[0] for _ in range(2))
    euler = backend.render(plain_ids, [11], options.model_copy(update={"sampler": "euler"}))[0]
    assert same(first.image, again.image)
    assert not same(first.image, euler.image)
    assert first.record["sampler"] == "er_sde"


def test_old_sampler_name_euler_a_is_euler_ancestral(backend, plain_ids, small_options):
    from zit_agent.backends.base import RenderOptions

    assert RenderOptions(sampler="euler_a").sampler == "euler_ancestral"
    options = small_options.model_copy(update={"sampler": "euler_a", "steps": 3})
    assert backend.render(plain_ids, [1], options)[0].record["sampler"] == "euler_ancestral"


def test_auto_shift_is_resolution_dependent_and_recorded(backend, plain_ids, small_options):
    rendered = backend.render(plain_ids, [7], small_options.model_copy(update={"shift": "auto"}))
    record = rendered[0].record
    seq_len = (SMALL["width"] // 16) * (SMALL["height"] // 16)
    mu = 0.5 + (seq_len - 256) * (1.15 - 0.5) / (4096 - 256)  # diffusers' defaults, in the config
    assert record["shift_source"] == "auto"
    assert record["shift_auto"]["formula"] == "diffusers"
    assert record["shift_auto"]["image_seq_len"] == seq_len
    assert record["shift"] == pytest.approx(math.exp(mu))
    assert record["sigmas"][1] < COMFY_8_STEPS_SHIFT_3["simple"][1]  # a smaller shift than 3


def test_the_notes_shift_formula_refuses_small_images(backend, plain_ids, small_options):
    with pytest.raises(UserError, match="larger than 256x256"):
        backend.render(plain_ids, [7], small_options.model_copy(update={"shift": "auto:notes"}))


@pytest.mark.parametrize(
    ("update", "message"),
    [({"scheduler": "karras"}, "unknown scheduler"), ({"shift": "big"}, "not a number")],
)
def test_bad_scheduler_and_shift_are_user_errors(
    backend, plain_ids, small_options, update, message
):
    with pytest.raises(UserError, match=message):
        backend.render(plain_ids, [0], small_options.model_copy(update=update))
