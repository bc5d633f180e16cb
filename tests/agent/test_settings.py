from __future__ import annotations

import pytest

from zit_agent.errors import UserError
from zit_agent.settings import DEFAULT_IMAGE_MODEL, load_settings


def test_defaults_are_turbo():
    s = load_settings()
    assert s.image_model == DEFAULT_IMAGE_MODEL == "Tongyi-MAI/Z-Image-Turbo"
    assert not s.render.model_dump(exclude_none=True)  # nothing set: the table's defaults apply
    values = ("steps", "guidance", "width", "height", "layer", "max_tokens", "shift")
    assert tuple(s.render_value(name) for name in values) == (
        8,
        0.0,
        1024,
        1024,
        -2,
        512,
        3.0,
    )


def test_toml_env_and_overrides(tmp_path, monkeypatch, zit_home):
    cfg = tmp_path / "zit.toml"
    cfg.write_text('image_model = "/models/zit"\n[render]\nsteps = 6\nwidth = 768\n')
    monkeypatch.setenv("ZIT_CONFIG", str(cfg))
    monkeypatch.setenv("ZIT_RENDER__WIDTH", "512")
    s = load_settings()
    assert s.image_model == "/models/zit" and s.render.steps == 6
    assert s.render.width == 512  # the environment beats the file
    assert s.home == zit_home
    assert load_settings(image_model="other/repo").image_model == "other/repo"
    assert s.tokenizer_spec == "/models/zit"


def test_bad_settings_are_user_errors(tmp_path, monkeypatch):
    cfg = tmp_path / "zit.toml"
    cfg.write_text("[render]\nsteps = 0\n")
    monkeypatch.setenv("ZIT_CONFIG", str(cfg))
    with pytest.raises(UserError, match="render.steps"):
        load_settings()
    cfg.write_text("not toml = = =\n")
    with pytest.raises(UserError, match="cannot read"):
        load_settings()
    cfg.write_text("colour = 'red'\n")
    with pytest.raises(UserError, match="colour"):
        load_settings()
