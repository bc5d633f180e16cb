"""Image-to-image and inpainting on the token path: the same pixels as diffusers'
`ZImageImg2ImgPipeline` / `ZImageInpaintPipeline` for a plain prompt, what strength does, the
checks on init images and masks, and the provenance of a refined render."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from tests.backends.zimage.conftest import IDEA, SMALL
from zit_agent.backends.provenance import render_request, save_rendered
from zit_agent.backends.zimage import check_options, refine_steps
from zit_agent.errors import UserError


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A smooth init image (a gradient with a disc), a noise image, a centre mask, and bad ones."""
    folder = tmp_path_factory.mktemp("refine")
    y, x = np.mgrid[0:64, 0:64]
    smooth = np.stack([x * 4, y * 4, (x + y) * 2], -1).astype(np.uint8)
    smooth[20:44, 20:44] = (250, 40, 40)
    Image.fromarray(smooth).save(folder / "init.png")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "other.png")
    Image.fromarray(smooth).resize((96, 80)).save(folder / "big.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    Image.fromarray(mask).resize((96, 80), Image.Resampling.NEAREST).save(folder / "bigmask.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(folder / "empty.png")
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(folder / "full.png")
    Image.fromarray(mask[:32]).save(folder / "wrongsize.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def img2img_pipe(tiny_zimage_dir):
    from diffusers import ZImageImg2ImgPipeline

    pipe = ZImageImg2ImgPipeline.from_pretrained(tiny_zimage_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def inpaint_pipe(tiny_zimage_dir):
    from diffusers import ZImageInpaintPipeline

    pipe = ZImageInpaintPipeline.from_pretrained(tiny_zimage_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def refined(options, init, **changes):
    return options.model_copy(update={"init_image": str(init), **changes})


def reference(pipe, seed: int, **kwargs):
    return pipe(
        prompt=IDEA,
        height=SMALL["height"],
        width=SMALL["width"],
        num_inference_steps=SMALL["steps"],
        guidance_scale=0.0,
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    ).images[0]


def test_img2img_equals_diffusers_img2img_pipeline(
    backend, img2img_pipe, plain_ids, small_options, files
):
    init = Image.open(files / "init.png").convert("RGB")
    for strength in (0.6, 0.3):  # 0.3 of 2 steps: the last step only
        options = refined(small_options, files / "init.png", strength=strength)
        [ours] = backend.render(plain_ids, [7], options)
        theirs = reference(img2img_pipe, 7, image=init, strength=strength)
        assert np.array_equal(pixels(ours.image), pixels(theirs)), strength


def test_inpaint_equals_diffusers_inpaint_pipeline(
    backend, inpaint_pipe, plain_ids, small_options, files
):
    init = Image.open(files / "init.png").convert("RGB")
    mask = Image.open(files / "mask.png")
    for strength in (1.0, 0.6):
        options = refined(
            small_options, files / "init.png", mask_image=str(files / "mask.png"), strength=strength
        )
        [ours] = backend.render(plain_ids, [3], options)
        theirs = reference(inpaint_pipe, 3, image=init, mask_image=mask, strength=strength)
        assert np.array_equal(pixels(ours.image), pixels(theirs)), strength


def test_the_refine_pipelines_share_the_loaded_modules(backend):
    for kind in ("img2img", "inpaint"):
        pipe = backend.refine_pipeline(kind)
        assert pipe.transformer is backend.pipe.transformer
        assert pipe.vae is backend.pipe.vae and pipe.text_encoder is backend.pipe.text_encoder


def test_strength_one_ignores_the_init_image_and_is_not_text_to_image(
    backend, plain_ids, small_options, files
):
    """At 1.0 the render starts from pure noise: the init image has no effect. It is not the
    text-to-image picture of that seed: the VAE's sampling of the init draws from the seed's
    generator first (as in diffusers), so the starting noise is another draw."""
    one = backend.render(plain_ids, [5], refined(small_options, files / "init.png", strength=1.0))
    other = backend.render(plain_ids, [5], refined(small_options, files / "other.png", strength=1))
    text_to_image = backend.render(plain_ids, [5], small_options)
    assert np.array_equal(pixels(one[0].image), pixels(other[0].image))
    assert not np.array_equal(pixels(one[0].image), pixels(text_to_image[0].image))


def vae_reconstruction(backend, path, seed: int) -> np.ndarray:
    """The init image through the VAE alone, sampled with the seed's generator as the pipeline
    samples it: what a strength near 0 approaches (the tiny random VAE does not reconstruct
    images; a trained one does, up to its own error)."""
    from diffusers.pipelines.z_image.pipeline_z_image_img2img import retrieve_latents

    vae = backend.pipe.vae
    image = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
    with torch.no_grad():
        latent = retrieve_latents(
            vae.encode(image[None].float() / 127.5 - 1),
            generator=torch.Generator().manual_seed(seed),
        )
        decoded = vae.decode(latent).sample[0]
    return ((decoded.permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().numpy().astype(np.int16)


def test_a_very_low_strength_stays_near_the_init_image(backend, plain_ids, small_options, files):
    """Strength 0.01 of a 100-step schedule runs the last step only (sigma 0.03): the image is
    within a mean of 6 levels (of 255) of the init image's VAE reconstruction, where strength 1
    is over 20 away (measured: 4.2 and 36 on this model)."""
    target = vae_reconstruction(backend, files / "init.png", 7)
    options = refined(small_options, files / "init.png", steps=100)
    low = backend.render(plain_ids, [7], options.model_copy(update={"strength": 0.01}))
    high = backend.render(plain_ids, [7], options.model_copy(update={"strength": 1.0, "steps": 2}))
    assert np.abs(pixels(low[0].image) - target).mean() < 6
    assert np.abs(pixels(high[0].image) - target).mean() > 20


def test_strength_runs_the_last_steps_of_the_schedule(small_options):
    options = small_options.model_copy(update={"init_image": "x.png"})
    steps = [refine_steps(8, options.model_copy(update={"strength": s})) for s in (0.01, 0.3, 1)]
    assert steps == [1, 3, 8]


def test_a_seed_renders_alike_alone_and_in_a_batch(backend, plain_ids, small_options, files):
    """Each seed samples the init through the VAE with its own generator (diffusers would use
    the first generator only), so a batch does not change which noise a seed gets; CPU kernels
    may still differ by a level between batch shapes (FACTS.md section 10)."""
    options = refined(small_options, files / "init.png", strength=0.6)
    batch = backend.render(plain_ids, [7, 8], options)
    alone = backend.render(plain_ids, [8], options)
    assert np.abs(pixels(batch[1].image) - pixels(alone[0].image)).max() <= 2


def test_other_samplers_refine(backend, plain_ids, small_options, files):
    base = refined(
        small_options, files / "init.png", strength=0.6, mask_image=str(files / "mask.png")
    )
    for name in ("dpmpp_2m", "unipc", "euler_ancestral"):
        options = base.model_copy(update={"sampler": name})
        first = backend.render(plain_ids, [2], options)[0].image
        again = backend.render(plain_ids, [2], options)[0].image
        assert np.array_equal(pixels(first), pixels(again)), name


def test_an_init_of_another_size_is_resized_and_said(
    backend, plain_ids, small_options, files, caplog
):
    options = refined(
        small_options, files / "big.png", strength=0.6, mask_image=str(files / "bigmask.png")
    )
    with caplog.at_level(logging.WARNING, logger="zit"):
        [image] = backend.render(plain_ids, [1], options)
    assert image.image.size == (64, 64)
    assert "init image is 96x80: resized to the render size 64x64" in caplog.text
    assert image.record["init"]["resized"] is True and image.record["init"]["size"] == [96, 80]


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"strength": 0.0}, "strength 0.0 is out of range: 0 would return the init image"),
        ({"strength": 1.5}, "strength 1.5 is out of range"),
        ({"init_image": "notes.txt"}, "is not a readable image"),
        ({"init_image": "missing.png"}, "does not exist"),
        ({"mask_image": "wrongsize.png"}, "the mask is 64x32, the init image 64x64"),
        ({"mask_image": "empty.png"}, "is empty: nothing to redraw"),
        ({"mask_image": "full.png"}, "covers the whole image"),
        ({"mask_image": "notes.txt"}, "mask"),
        ({"init_image": None, "mask_image": "mask.png"}, "a mask needs an init image"),
    ],
)
def test_bad_refine_input_is_one_line(small_options, files, update, message):
    paths = {k: str(files / v) for k, v in update.items() if k.endswith("image") and v}
    options = refined(small_options, files / "init.png", **{**update, **paths})
    with pytest.raises(UserError, match=message) as caught:
        check_options(options)
    assert "\n" not in caught.value.one_line()


def test_the_record_names_init_strength_and_mask_and_renders_again(
    backend, plain_ids, small_options, files, tmp_path
):
    # the init is itself a zit image: the record points at its record
    [source] = backend.render(plain_ids, [9], small_options)
    [init_png] = save_rendered([source], tmp_path / "first", idea=IDEA)
    options = refined(small_options, init_png, strength=0.6, mask_image=str(files / "mask.png"))
    [image] = backend.render(plain_ids, [4], options)
    [png] = save_rendered([image], tmp_path / "second", idea=IDEA)
    record = image.record
    init = record["init"]
    assert init["image"] == str(init_png.resolve()) and len(init["sha256"]) == 64
    assert init["zit_record"] == str(init_png.with_suffix(".json").resolve())
    assert init["source_token_sha256"] == source.record["token_sha256"]
    assert init["source_seed"] == 9
    assert init["mask"] == str((files / "mask.png").resolve()) and init["mask_share"] == 0.25
    assert record["strength"] == 0.6 and record["init_image"] == init["image"]
    # the record renders the same image again
    from zit_agent.backends.provenance import read_record

    request = render_request(read_record(png))
    assert request.options.init_image == init["image"] and request.options.strength == 0.6
    again = backend.render(request.token_ids, [request.seed], request.options)
    assert np.array_equal(pixels(again[0].image), pixels(Image.open(png).convert("RGB")))


def test_a_plain_render_records_no_init(backend, plain_ids, small_options):
    [image] = backend.render(plain_ids, [1], small_options)
    assert image.record["init"] is None and image.record["init_image"] is None


# -- ControlNet inpainting -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def union2_dir(tmp_path_factory):
    from zit_agent.backends.tiny.zimage import build_tiny_controlnet

    return build_tiny_controlnet(tmp_path_factory.mktemp("union2") / "cn", union="2")


@pytest.fixture(scope="module")
def union2_backend(tiny_zimage_dir, union2_dir):
    from zit_agent.backends.zimage import ZImageBackend

    return ZImageBackend.from_pretrained(tiny_zimage_dir, controlnet=str(union2_dir))


def test_control_inpaint_equals_diffusers_controlnet_inpaint_pipeline(
    union2_backend, tiny_zimage_dir, union2_dir, plain_ids, small_options, files
):
    from diffusers import ZImageControlNetInpaintPipeline, ZImageControlNetModel, ZImagePipeline

    plain = ZImagePipeline.from_pretrained(tiny_zimage_dir)
    controlnet = ZImageControlNetModel.from_pretrained(union2_dir)
    pipe = ZImageControlNetInpaintPipeline(**plain.components, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    options = refined(
        small_options, files / "init.png", mask_image=str(files / "mask.png"), strength=1.0,
        control_image=str(files / "other.png"),
    )  # fmt: skip
    [ours] = union2_backend.render(plain_ids, [6], options)
    theirs = reference(
        pipe, 6, image=Image.open(files / "init.png").convert("RGB"),
        mask_image=Image.open(files / "mask.png"), control_image=Image.open(files / "other.png"),
        controlnet_conditioning_scale=0.75,
    )  # fmt: skip
    assert np.array_equal(pixels(ours.image), pixels(theirs))
    assert ours.record["control"]["fixes_composition"] and ours.record["init"]["mask_share"] == 0.25


def test_control_inpaint_needs_a_mask_a_union_2_and_strength_one(
    union2_backend, tiny_zimage_dir, plain_ids, small_options, files, tmp_path
):
    from zit_agent.backends.tiny.zimage import build_tiny_controlnet
    from zit_agent.backends.zimage import ZImageBackend

    control = {"control_image": str(files / "other.png")}
    with pytest.raises(UserError, match="needs a mask"):
        union2_backend.render(plain_ids, [1], refined(small_options, files / "init.png", **control))
    masked = refined(
        small_options, files / "init.png", mask_image=str(files / "mask.png"), **control
    )
    with pytest.raises(UserError, match="strength 0.6 with a control map"):
        union2_backend.render(plain_ids, [1], masked.model_copy(update={"strength": 0.6}))
    union1 = ZImageBackend.from_pretrained(
        tiny_zimage_dir, controlnet=str(build_tiny_controlnet(tmp_path / "cn1"))
    )
    with pytest.raises(UserError, match="cannot inpaint"):
        union1.render(plain_ids, [1], masked.model_copy(update={"strength": 1.0}))
