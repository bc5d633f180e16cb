"""Eval suites: YAML files that name ideas, seeds, configurations and the image backend.

A suite is validated with pydantic; an error names the field and the line it sits on (read from the
YAML node marks), so `configs.agent.strategy` on line 12 is reported as such. See docs/evals.md for
the format. Shipped suites live in `evals/suites/` and can be named without a path (`smoke`).
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from zit_agent.backends.base import NoiseSettings, Sampling
from zit_agent.defaults import AGENT, LIMITS
from zit_agent.errors import UserError
from zit_agent.options import option_field

STRATEGIES = ("raw", "expanded", "think", "agent")
WRITER_STRATEGIES = ("expanded", "think")
DEFAULT_SHAPES = {"expanded": "plain", "think": "think"}
NAME_PATTERN = r"[A-Za-z0-9_.-]+"  # config names and idea ids: they become parts of file names
NAME_RULE = "may use only letters, digits, '.', '_', '-'"
SIDE_MULTIPLE = 16  # Z-Image's patching (FACTS.md section 1)

# A suite's size, bounded before anything is built from it: its file, its YAML nodes counted with
# every alias expanded (an anchor aliased 20,000 times is a few kB of YAML and gigabytes of
# objects), and its ideas and configurations (the standard suite has 50 ideas and 4 configs).
MAX_SUITE_BYTES = 4 << 20
MAX_SUITE_NODES = 200_000
MAX_IDEAS = 2000
MAX_CONFIGS = 64


Seed = Annotated[int, Field(ge=0, le=LIMITS.max_seed)]
Steps = Annotated[int, Field(ge=1, le=LIMITS.max_steps)]


def _multiple_of_side(value: int) -> int:
    if value % SIDE_MULTIPLE:
        lower = value - value % SIDE_MULTIPLE
        raise ValueError(
            f"{value} is not a multiple of {SIDE_MULTIPLE}: use {lower} or {lower + SIDE_MULTIPLE}"
        )
    return value


Side = Annotated[
    int, Field(ge=LIMITS.min_side, le=LIMITS.max_side), AfterValidator(_multiple_of_side)
]


class SuiteFieldError(UserError):
    """A suite that parses but does not add up; `loc` is the path of the field at fault."""

    def __init__(self, loc: tuple[Any, ...], message: str):
        super().__init__(message)
        self.loc = loc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Idea(_Strict):
    """One idea. `locked` attributes must survive a rewrite (fidelity); `tags` group ideas."""

    id: str = ""
    text: str = Field(min_length=1)
    locked: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Idea:
        if not self.text.strip():
            raise ValueError("the idea text is empty")
        if not self.id:
            self.id = slug(self.text)
        if not re.fullmatch(NAME_PATTERN, self.id):
            raise ValueError(f"idea id {self.id!r} {NAME_RULE}")
        missing = [a for a in self.locked if not attribute_present(a, self.text)]
        if missing:
            raise ValueError(
                f"locked attributes {missing} are not in the idea text: lock only words it states"
            )
        return self


class Config(_Strict):
    """A strategy plus overrides. Unset overrides take the suite's or the backend's defaults."""

    strategy: Literal["raw", "expanded", "think", "agent"]
    description: str = ""
    shape: Literal["plain", "think", "answer"] | None = option_field("shape")
    writer: str | None = option_field("writer")
    retokenize: bool | None = option_field("retokenize")
    instruction: str = "expand"
    sampling: Sampling = Field(default_factory=Sampling)
    target_words: int | None = Field(None, ge=5)
    noise: NoiseSettings | None = None
    # The run options a config may set: their help and bounds are RunOptions' (`option_field`);
    # unset, they follow zit.toml and the backend's defaults as for `zit generate`.
    layer: int | None = option_field("layer")
    steps: int | None = option_field("steps")
    sampler: str | None = option_field("sampler")  # ComfyUI's names (docs/sampling.md)
    scheduler: str | None = option_field("scheduler")
    shift: float | str | None = option_field("shift")
    control: str | None = option_field("control")  # needs backend.controlnet
    control_scale: float | None = option_field("control_scale")
    preprocess: Literal["none", "canny"] | None = option_field("preprocess")
    max_tokens: int | None = option_field(
        "max_tokens", ge=LIMITS.min_tokens, le=LIMITS.token_ceiling
    )
    max_attempts: int = option_field("max_attempts", default=AGENT.max_attempts)  # agent only
    ladder: list[str] | None = Field(
        None, min_length=1, description="agent: the escape ladder's order (default: the agent's)"
    )
    # Composition levers (docs/agent.md): candidates need the agent strategy (it keeps n of M).
    candidates: int | None = option_field("candidates", ge=1)
    preview_step: int | None = option_field("preview_step")
    early_prompt: str | None = option_field("early_prompt")
    early_steps: int | None = option_field("early_steps")

    @field_validator("sampler", "scheduler", "shift", mode="before")
    @classmethod
    def _sampling_lever(cls, value: Any, info: ValidationInfo) -> Any:
        """Canonical names and a parsed shift; a bad one is reported at its line."""
        from zit_agent.backends.samplers import get_sampler
        from zit_agent.backends.schedules import get_scheduler, parse_shift

        if value is None:
            return None
        check = {
            "sampler": lambda v: get_sampler(str(v)).name,
            "scheduler": lambda v: get_scheduler(str(v)),
            "shift": parse_shift,
        }[info.field_name]
        try:
            return check(value)
        except UserError as err:
            raise ValueError(err.one_line()) from None

    @field_validator("ladder")
    @classmethod
    def _ladder(cls, value: list[str] | None) -> list[str] | None:
        """Registered levers only (built-in or installed), reported at the suite's line."""
        from zit_agent.agent.levers import parse_ladder

        try:
            return None if value is None else parse_ladder(value)
        except UserError as err:
            raise ValueError(err.one_line()) from None

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.shape is not None and self.strategy == "raw" and self.shape != "plain":
            raise ValueError("the raw strategy has no writer: its shape is always plain")
        if self.candidates and self.strategy != "agent":
            raise ValueError("candidates keep n of M images: only the agent strategy takes them")
        return self

    def run_values(self) -> dict[str, Any]:
        """What this config sets, as run options (RunOptions' names and forms): the fields
        both declare, by name; the ladder, shift and noise in their flag forms. The writer is
        the suite's to load (`Suite.writer_of`)."""
        from zit_agent.options import RunOptions

        shared = set(type(self).model_fields) & set(RunOptions.model_fields)
        values = {name: getattr(self, name) for name in shared - {"writer", "noise"}}
        values["ladder"] = ",".join(self.ladder) if self.ladder else None
        values["shift"] = None if self.shift is None else str(self.shift)
        noise = self.noise if self.noise and self.noise.strength else None
        if noise is not None:
            values.update(noise=noise.strength, noise_fraction=noise.fraction,
                          noise_steps=noise.steps_share, noise_seed=noise.seed)  # fmt: skip
        return values

    @property
    def sequence_shape(self) -> str:
        return self.shape or DEFAULT_SHAPES.get(self.strategy, "plain")


class Backend(_Strict):
    """The image backend: a Z-Image model, or the sketch stand-in (not an image model)."""

    kind: str = Field(
        "zimage", description="a registered image backend: zimage, sketch, a plugin's"
    )
    model: str | None = Field(None, description="zimage: a diffusers directory or repo id")
    tokenizer: str | None = Field(None, description="default: the model's, or the bundled Qwen3")
    width: Side | None = None
    height: Side | None = None
    steps: Steps | None = None
    dtype: Literal["bf16", "fp16", "fp32"] | None = Field(
        None, description="zimage: default bf16 on CUDA, fp32 on CPU"
    )
    cpu_offload: bool = Field(False, description="zimage: model CPU offload (for small GPUs)")
    attention: str | None = Field(None, description="zimage: a diffusers attention backend")
    compile: bool = Field(False, description="zimage: torch.compile the transformer")
    controlnet: str | None = Field(
        None, description="zimage: a ControlNet Union (folder, repo id or .safetensors)"
    )
    variant: Literal["turbo", "base"] | None = Field(None, description="default: detected")

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        from zit_agent.backends.registry import registered

        known = registered("image backend")
        if value not in known:
            raise ValueError(f"unknown image backend {value!r}: use one of {', '.join(known)}")
        return value


class Suite(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    seeds: list[Seed] = Field(
        min_length=2, max_length=LIMITS.max_count, description="diversity needs two or more"
    )
    baseline: str = "raw"
    backend: Backend = Field(default_factory=Backend)
    writer: str | None = Field(None, description="the writer of configs that name none")
    embedder: str = "hash"
    fidelity: str = Field("auto", description="auto, attributes, or clip:DIR_OR_REPO")
    ideas: list[Idea] = Field(min_length=1, max_length=MAX_IDEAS)
    configs: dict[str, Config] = Field(min_length=1, max_length=MAX_CONFIGS)

    @field_validator("seeds", mode="before")
    @classmethod
    def _count_to_list(cls, value: Any) -> Any:
        """`seeds: 4` means seeds 0..3."""
        if isinstance(value, int) and not isinstance(value, bool):
            if not 2 <= value <= LIMITS.max_count:
                raise ValueError(
                    f"give 2..{LIMITS.max_count} seeds: diversity compares an idea's images"
                )
            return list(range(value))
        return value

    @field_validator("fidelity")
    @classmethod
    def _fidelity_kind(cls, value: str) -> str:
        if value not in ("auto", "attributes") and not value.startswith("clip:"):
            raise ValueError("use auto, attributes or clip:DIR_OR_REPO")
        return value

    @field_validator("configs")
    @classmethod
    def _config_names(cls, value: dict[str, Config]) -> dict[str, Config]:
        bad = [n for n in value if not re.fullmatch(NAME_PATTERN, n)]
        if bad:
            raise ValueError(f"config names {bad} {NAME_RULE}")
        return value

    @model_validator(mode="after")
    def _check(self) -> Suite:
        if len(set(self.seeds)) != len(self.seeds):
            raise SuiteFieldError(("seeds",), "seeds repeat")
        ids = [i.id for i in self.ideas]
        for n, idea_id in enumerate(ids):
            if idea_id in ids[:n]:
                raise SuiteFieldError(
                    ("ideas", n), f"idea id {idea_id!r} repeats: give the ideas distinct `id`s"
                )
        if self.baseline not in self.configs:
            raise SuiteFieldError(
                ("baseline",), f"baseline {self.baseline!r} is not one of the configs"
            )
        for name, config in self.configs.items():
            if config.strategy in WRITER_STRATEGIES and not self.writer_of(config):
                raise SuiteFieldError(
                    ("configs", name),
                    f"the {config.strategy} strategy needs a writer: set `writer` on the config "
                    "or on the suite",
                )
        return self

    def writer_of(self, config: Config) -> str | None:
        """The writer spec a config uses (None: no writer; `raw` never has one)."""
        if config.strategy == "raw":
            return None
        spec = config.writer or self.writer
        return None if spec in (None, "none") else spec

    def select(self, only: list[str] | None = None, limit: int | None = None) -> Suite:
        """This suite with only the named configs and the first `limit` ideas."""
        configs = self.configs
        if only is not None and not only:
            raise UserError(
                "no configuration selected", hint=f"name one of {', '.join(self.configs)}"
            )
        if only:
            unknown = [n for n in only if n not in self.configs]
            if unknown:
                raise UserError(
                    f"unknown config {', '.join(unknown)} for {only}",
                    hint=f"the suite has {', '.join(self.configs)}",
                )
            configs = {n: c for n, c in self.configs.items() if n in only}
        ideas = self.ideas[:limit] if limit else self.ideas
        baseline = self.baseline if self.baseline in configs else next(iter(configs))
        return self.model_copy(update={"configs": configs, "ideas": ideas, "baseline": baseline})

    def digest(self) -> str:
        return hashlib.sha256(canonical_json(self.model_dump()).encode()).hexdigest()


# -- helpers -------------------------------------------------------------------------------------
def slug(text: str, width: int = 40, empty: str = "idea") -> str:
    """Lowercase letters and digits joined by '-': safe as a file or folder name anywhere."""
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return words[:width].rstrip("-") or empty


def attribute_present(attribute: str, text: str) -> bool:
    """Whether `text` states `attribute`: its words, in order, as whole words (case-insensitive)."""
    words = re.findall(r"\w+", attribute.lower())
    if not words:
        return False
    pattern = r"\b" + r"\W+".join(map(re.escape, words)) + r"\b"
    return re.search(pattern, text.lower()) is not None


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


# -- loading -------------------------------------------------------------------------------------
def shipped_suites() -> list[str]:
    folder = resources.files(__package__) / "suites"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_suite_path(spec: str | Path) -> Path:
    """A suite file (or a run's config.json), or the name of a suite shipped in `evals/suites/`."""
    path = Path(spec)
    if path.is_file():
        return path
    shipped = Path(str(resources.files(__package__) / "suites" / f"{spec}.yaml"))
    if not path.suffix and shipped.is_file():
        return shipped
    raise UserError(
        f"no suite file {str(spec)!r}",
        hint=f"give a YAML file or a shipped suite: {', '.join(shipped_suites())}",
    )


def load_suite(spec: str | Path) -> Suite:
    path = resolve_suite_path(spec)
    try:
        if path.stat().st_size > MAX_SUITE_BYTES:
            raise UserError(
                f"suite {path} is over {MAX_SUITE_BYTES >> 20} MB",
                hint=f"split it: a suite holds at most {MAX_IDEAS} ideas",
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read suite {path}: {err}") from None
    return parse_suite(text, source=str(path))


def _expanded_nodes(root: Any, source: str) -> int:
    """How many YAML nodes `root` holds with its aliases expanded, counted in time linear in
    the distinct nodes (an alias is the node it names); past `MAX_SUITE_NODES` it stops."""
    import yaml

    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise UserError(f"{source}: a YAML alias refers to itself", hint="remove the loop")
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        open_nodes.discard(key)
        sizes[key] = min(total, MAX_SUITE_NODES + 1)
        return sizes[key]

    return size(root) if root is not None else 0


def parse_suite(text: str, source: str = "<suite>") -> Suite:
    """Validate suite YAML; errors name the field and its line."""
    import yaml

    if len(text) > MAX_SUITE_BYTES:
        raise UserError(f"{source}: the suite is over {MAX_SUITE_BYTES >> 20} MB")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ten times faster
    try:
        root = yaml.compose(text, Loader=loader)
        if _expanded_nodes(root, source) > MAX_SUITE_NODES:
            raise UserError(
                f"{source}: the suite expands to over {MAX_SUITE_NODES:,} YAML nodes "
                "(an anchor aliased too many times?)",
                hint=f"write the suite out plainly; it holds at most {MAX_IDEAS} ideas",
            )
        data = yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader, C or Python)
    except RecursionError:
        raise UserError(f"{source}: the YAML is nested too deeply", hint="flatten it") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(err, "problem", None) or str(err)
        raise UserError(f"{where}: not valid YAML: {problem}", hint="fix the YAML syntax") from None
    if isinstance(data, dict) and "suite_digest" in data and "suite" in data:
        # a run's config.json: rerun the suite exactly as that run had it
        data, root, prefix = data["suite"], _child(root, "suite"), ["suite"]
    else:
        prefix = []
    if not isinstance(data, dict):
        raise UserError(
            f"{source}: a suite is a YAML mapping with name, seeds, ideas and configs",
            hint="see docs/evals.md for the format",
        )
    try:
        return Suite.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = [p for p in first["loc"] if p not in ("function-after", "function-before")]
        raise _located(source, root, prefix, loc, first["msg"]) from None
    except SuiteFieldError as err:
        raise _located(source, root, prefix, list(err.loc), str(err)) from None


def _located(source: str, root: Any, prefix: list[str], loc: list[Any], message: str) -> UserError:
    field = ".".join(str(p) for p in [*prefix, *loc]) or "(suite)"
    return UserError(
        f"{source}:{_line_of(root, loc)}: field {field}: {message}",
        hint="see docs/evals.md for the suite format",
    )


def _child(node: Any, key: str) -> Any:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return next((v for k, v in node.value if k.value == key), node)
    return node


def _line_of(node: Any, loc: list[Any]) -> int:
    """The 1-based line of the YAML node at `loc`, or of its nearest existing parent."""
    import yaml

    for key in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == str(key)), None)
            if child is None:  # an unknown key: point at the key itself
                child = next((k for k, _ in node.value if k.value == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            child = node.value[key]
        if child is None:
            break
        node = child
    return node.start_mark.line + 1
