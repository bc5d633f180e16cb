"""ControlNet Union on the tiny model: the same pixels as diffusers' ControlNet pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from tests.backends.zimage.conftest import IDEA, SMALL
from zit_agent.backends.zimage import ZImageBackend, check_options
from zit_agent.errors import ModelNotFoundError, UserError


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def controlnet_dir(tmp_path_factory):
    from zit_agent.backends.tiny.zimage import build_tiny_controlnet

    return build_tiny_controlnet(tmp_path_factory.mktemp("controlnet") / "cn")


@pytest.fixture(scope="module")
def control_backend(tiny_zimage_dir, controlnet_dir):
    return ZImageBackend.from_pretrained(tiny_zimage_dir, controlnet=str(controlnet_dir))


@pytest.fixture(scope="module")
def control_pipe(tiny_zimage_dir, controlnet_dir):
    """diffusers' own ControlNet pipeline over the same saved files: the reference."""
    from diffusers import ZImageControlNetModel, ZImageControlNetPipeline, ZImagePipeline

    plain = ZImagePipeline.from_pretrained(tiny_zimage_dir)
    controlnet = ZImageControlNetModel.from_pretrained(controlnet_dir)
    pipe = ZImageControlNetPipeline(**plain.components, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def control_file(tmp_path_factory):
    """A photo-like picture with hard edges: a disc and a bar on a gradient."""
    size = 96
    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    image = Image.fromarray(np.stack([np.tile(ramp, (size, 1))] * 3, axis=-1))
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 10, 50, 50), fill=(250, 30, 30))
    draw.rectangle((55, 60, 90, 80), fill=(20, 20, 220))
    path = tmp_path_factory.mktemp("control") / "map.png"
    image.save(path)
    return path


def reference(pipe, seed: int | list[int], control_image, scale: float):
    """diffusers' render of `seed` alone, or (a list) the images of those seeds as one batch."""
    seeds = seed if isinstance(seed, list) else [seed]
    images = pipe(
        prompt=IDEA,
        num_images_per_prompt=len(seeds),
        height=SMALL["height"],
        width=SMALL["width"],
        num_inference_steps=SMALL["steps"],
        guidance_scale=0.0,
        control_image=control_image,
        controlnet_conditioning_scale=scale,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
    ).images
    return images if isinstance(seed, list) else images[0]


def controlled(options, path, **changes):
    return options.model_copy(update={"control_image": str(path), **changes})


def test_control_render_equals_diffusers_controlnet_pipeline(
    control_backend, control_pipe, plain_ids, small_options, control_file
):
    options = controlled(small_options, control_file, control_scale=0.75)
    images = control_backend.render(plain_ids, [7, 8], options)  # one batch of two seeds
    # Compared with diffusers' batch of the same two seeds: a seed alone may differ from it by
    # one 8-bit level (FACTS.md section 10).
    expected = reference(control_pipe, [7, 8], Image.open(control_file), 0.75)
    for rendered, theirs in zip(images, expected, strict=True):
        assert np.array_equal(pixels(rendered.image), pixels(theirs))


def test_the_control_map_changes_the_image_and_scale_zero_is_the_plain_render(
    control_backend, backend, plain_ids, small_options, control_file
):
    plain = pixels(backend.render(plain_ids, [7], small_options)[0].image)
    same_model_plain = pixels(control_backend.render(plain_ids, [7], small_options)[0].image)
    zero = control_backend.render(
        plain_ids, [7], controlled(small_options, control_file, control_scale=0.0)
    )
    full = control_backend.render(plain_ids, [7], controlled(small_options, control_file))
    assert np.array_equal(same_model_plain, plain)
    assert np.array_equal(pixels(zero[0].image), plain)
    assert np.abs(pixels(full[0].image) - plain).mean() > 1.0


def test_canny_preprocess_equals_the_pipeline_given_the_edges(
    control_backend, control_pipe, plain_ids, small_options, control_file
):
    from zit_agent.backends.controlnet import canny

    options = controlled(small_options, control_file, preprocess="canny")
    rendered = control_backend.render(plain_ids, [3], options)[0]
    edges = canny(
        Image.open(control_file).convert("RGB").resize((64, 64), Image.Resampling.BICUBIC)
    )
    assert set(np.unique(np.asarray(edges))) == {0, 255}
    assert np.array_equal(
        pixels(rendered.image), pixels(reference(control_pipe, 3, edges, options.control_scale))
    )
    as_is = control_backend.render(plain_ids, [3], controlled(small_options, control_file))[0]
    assert not np.array_equal(pixels(rendered.image), pixels(as_is.image))


def test_the_record_says_a_control_map_fixed_the_composition(
    control_backend, plain_ids, small_options, control_file, controlnet_dir
):
    import hashlib

    record = control_backend.render(plain_ids, [1], controlled(small_options, control_file))[
        0
    ].record
    assert record["control"] == {
        "image": str(control_file.resolve()),
        "image_sha256": hashlib.sha256(control_file.read_bytes()).hexdigest(),
        "scale": 0.75,
        "preprocess": "none",
        "controlnet": str(controlnet_dir.resolve()),
        "fixes_composition": True,
    }
    plain = control_backend.render(plain_ids, [1], small_options)[0].record
    assert plain["control"] is None


def test_single_file_controlnet_with_its_config_beside_it_is_the_same_model(
    tiny_zimage_dir,
    controlnet_dir,
    control_backend,
    plain_ids,
    small_options,
    control_file,
    tmp_path,
):
    from safetensors.torch import save_file

    from zit_agent.backends.tiny.zimage import tiny_controlnet

    folder = tmp_path / "Z-Image-Turbo-Fun-Controlnet-Union"
    folder.mkdir()
    save_file(tiny_controlnet(0).state_dict(), str(folder / "controlnet-union.safetensors"))
    (folder / "config.json").write_text((controlnet_dir / "config.json").read_text())
    other = ZImageBackend.from_pretrained(
        tiny_zimage_dir, controlnet=str(folder / "controlnet-union.safetensors")
    )
    options = controlled(small_options, control_file)
    assert np.array_equal(
        pixels(other.render(plain_ids, [5], options)[0].image),
        pixels(control_backend.render(plain_ids, [5], options)[0].image),
    )


def test_single_file_controlnet_without_a_config_names_where_to_get_one(tiny_zimage_dir, tmp_path):
    from safetensors.torch import save_file

    from zit_agent.backends.tiny.zimage import tiny_controlnet

    path = tmp_path / "union.safetensors"
    save_file(tiny_controlnet(0).state_dict(), str(path))
    with pytest.raises(ModelNotFoundError, match="config") as err:
        ZImageBackend.from_pretrained(tiny_zimage_dir, controlnet=str(path))
    assert "hf download hlky/Z-Image-Turbo-Fun-Controlnet-Union" in err.value.one_line()


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ("/no/such/controlnet", ModelNotFoundError, "ControlNet: no directory"),
        ("/no/such/union.safetensors", ModelNotFoundError, "ControlNet: no file"),
        ("union.pth", UserError, "pickle"),
    ],
)
def test_a_missing_or_unsafe_controlnet_is_a_one_line_error(tiny_zimage_dir, spec, error, message):
    with pytest.raises(error, match=message) as err:
        ZImageBackend.from_pretrained(tiny_zimage_dir, controlnet=spec)
    assert "\n" not in err.value.one_line()


def test_a_controlnet_of_another_width_is_refused(tiny_zimage_dir, controlnet_dir, tmp_path):
    config = json.loads((controlnet_dir / "config.json").read_text())
    from diffusers import ZImageControlNetModel

    config = {k: v for k, v in config.items() if not k.startswith("_")}
    ZImageControlNetModel(**{**config, "dim": 64, "n_heads": 4, "n_kv_heads": 4}).save_pretrained(
        tmp_path / "wide"
    )
    with pytest.raises(UserError, match="ControlNet's dim is 64, the transformer's 32"):
        ZImageBackend.from_pretrained(tiny_zimage_dir, controlnet=str(tmp_path / "wide"))


def test_a_missing_control_image_is_a_one_line_error(control_backend, plain_ids, small_options):
    options = small_options.model_copy(update={"control_image": "/no/such/map.png"})
    with pytest.raises(UserError, match="control image /no/such/map.png does not exist") as err:
        control_backend.render(plain_ids, [1], options)
    assert "\n" not in err.value.one_line()


def test_a_control_image_without_a_controlnet_is_refused(
    backend, plain_ids, small_options, control_file
):
    with pytest.raises(UserError, match="needs a ControlNet"):
        backend.render(plain_ids, [1], controlled(small_options, control_file))


def test_an_unreadable_control_image_is_a_user_error(
    control_backend, plain_ids, small_options, tmp_path
):
    junk = tmp_path / "map.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(UserError, match="is not readable"):
        control_backend.render(plain_ids, [1], controlled(small_options, junk))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"control_scale": 2.5}, "control scale 2.5 is out of range"),
        ({"control_scale": -0.1}, "out of range"),
        ({"preprocess": "depth"}, "unknown control preprocessor 'depth'"),
    ],
)
def test_control_options_are_checked_without_a_model(small_options, changes, message):
    with pytest.raises(UserError, match=message):
        check_options(small_options.model_copy(update=changes))


def test_the_default_control_scale_comes_from_the_defaults_table(small_options):
    from zit_agent.defaults import RENDER

    assert small_options.control_scale == RENDER.control_scale == 0.75


def test_a_union_2_controlnet_equals_diffusers_too(
    tiny_zimage_dir, tmp_path, plain_ids, small_options, control_file
):
    from diffusers import ZImageControlNetModel, ZImageControlNetPipeline, ZImagePipeline

    from zit_agent.backends.tiny.zimage import build_tiny_controlnet

    folder = build_tiny_controlnet(tmp_path / "union-2", union="2")
    backend = ZImageBackend.from_pretrained(tiny_zimage_dir, controlnet=str(folder))
    assert backend.control_pipe.controlnet.config.control_in_dim == 33
    plain = ZImagePipeline.from_pretrained(tiny_zimage_dir)
    pipe = ZImageControlNetPipeline(
        **plain.components, controlnet=ZImageControlNetModel.from_pretrained(folder)
    )
    pipe.set_progress_bar_config(disable=True)
    rendered = backend.render(plain_ids, [2], controlled(small_options, control_file))[0]
    expected = reference(pipe, 2, Image.open(control_file), 0.75)
    assert np.array_equal(pixels(rendered.image), pixels(expected))
