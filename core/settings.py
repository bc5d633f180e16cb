"""Settings: one pydantic model, read from `zit.toml` and `ZIT_*` environment variables.

Precedence (highest first): explicit arguments (CLI flags), `ZIT_*` environment variables, the TOML
file (`$ZIT_CONFIG`, else `./zit.toml`), then the defaults below. Nested keys use `__` in the
environment: `ZIT_RENDER__STEPS=4`.

The Z-Image-Turbo defaults live in `RenderDefaults` and nowhere else.
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

DEFAULT_IMAGE_MODEL = "Tongyi-MAI/Z-Image-Turbo"


class RenderDefaults(BaseModel):
    """Z-Image-Turbo's own settings (FACTS.md section 1-2): 8 steps, CFG off, 1024x1024."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(8, ge=1, description="Denoising steps (Turbo is distilled for 8).")
    guidance: float = Field(0.0, ge=0.0, description="CFG scale; 0 turns CFG off (Turbo).")
    width: int = Field(1024, ge=16)
    height: int = Field(1024, ge=16)
    shift: float = Field(3.0, gt=0.0, description="Static flow-matching shift (Turbo: 3.0).")
    layer: int = Field(-2, description="Text-encoder hidden layer fed to the DiT (-2: Z-Image's).")
    max_tokens: int = Field(512, ge=16, description="Token budget of the whole chat sequence.")


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

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
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
