"""Settings: one pydantic model, read from `zit.toml` and `ZIT_*` environment variables.

Precedence (highest first): explicit arguments (CLI flags), `ZIT_*` environment variables, the TOML
file (`$ZIT_CONFIG`, else `./zit.toml`), then the defaults below. Nested keys use `__` in the
environment: `ZIT_RENDER__STEPS=4`.

Defaults live in `zit_agent.defaults` and nowhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from zit_agent.defaults import LIMITS
from zit_agent.options import option_field

DEFAULT_IMAGE_MODEL = "Tongyi-MAI/Z-Image-Turbo"


class RenderDefaults(BaseModel):
    """Render settings a user may set in zit.toml or ZIT_RENDER__*; unset ones are None and come
    from the model variant, else `zit_agent.defaults.RENDER` (the run API resolves them)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # The run options of the same name and form: their help and bounds (core/options.py).
    steps: int | None = option_field("steps")
    guidance: float | None = option_field("guidance")
    layer: int | None = option_field("layer")
    max_tokens: int | None = option_field(
        "max_tokens", ge=LIMITS.min_tokens, le=LIMITS.token_ceiling
    )
    # The option `size` is WIDTHxHEIGHT and `shift` may be auto: here each is a number.
    width: int | None = Field(None, ge=LIMITS.min_side, le=LIMITS.max_side)
    height: int | None = Field(None, ge=LIMITS.min_side, le=LIMITS.max_side)
    shift: float | None = Field(None, gt=0.0, description="Static flow-matching shift.")


def default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "zit"


def config_file() -> Path:
    return Path(os.environ.get("ZIT_CONFIG", "zit.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ZIT_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(default_factory=default_home, description="Outputs, history, sessions.")
    image_model: str = Field(DEFAULT_IMAGE_MODEL, description="Z-Image directory or repo id.")
    tokenizer: str | None = Field(
        None, description="Tokenizer directory or repo id; default: the image model's tokenizer/."
    )
    writer: str | None = Field(
        None, description="Writer spec: gguf:PATH, gguf:REPO/FILE or hf:DIR_OR_REPO."
    )
    embedder: str | None = Field(
        None, description="Image embedder for rut checks: hash, hf:DIR_OR_REPO or dreamsim."
    )
    analyzer: str = Field(
        "faces", description="Image analyzer for the identity/shot/angle rut kinds: faces or none."
    )
    download: bool = Field(
        False, description="Allow fetching missing model files from the Hugging Face Hub."
    )
    render: RenderDefaults = Field(default_factory=RenderDefaults)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file())
        return (init_settings, env_settings, toml)

    def render_value(self, name: str):
        """A render setting: zit.toml / ZIT_RENDER__* when set there, else the table's default."""
        from zit_agent.defaults import RENDER

        value = getattr(self.render, name)
        return value if value is not None else getattr(RENDER, name)

    @property
    def tokenizer_spec(self) -> str:
        return self.tokenizer or self.image_model

    @property
    def outputs_dir(self) -> Path:
        return self.home / "outputs"

    @property
    def history_db(self) -> Path:
        return self.home / "history.sqlite"

    @property
    def sessions_db(self) -> Path:
        return self.home / "sessions.sqlite"


def load_settings(**overrides) -> Settings:
    """Settings with `overrides` (None values ignored) on top; bad files become a UserError."""
    from pydantic import ValidationError

    from zit_agent.errors import UserError
    from zit_agent.files import check_home

    given = {k: v for k, v in overrides.items() if v is not None}
    named = os.environ.get("ZIT_CONFIG")
    if named and named != os.devnull and not Path(named).is_file():
        raise UserError(
            f"ZIT_CONFIG names {named}, which is not a file",
            hint=f"point ZIT_CONFIG at a zit.toml, or at {os.devnull} for none",
        )
    try:
        settings = Settings(**given)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(
            f"invalid setting {where!r}: {first['msg']}",
            hint=f"check {config_file()} and ZIT_* environment variables",
        ) from None
    except (OSError, ValueError) as err:  # unreadable or malformed TOML
        raise UserError(
            f"cannot read {config_file()}: {err}", hint="fix or remove the file"
        ) from None
    check_home(settings.home)
    return settings
