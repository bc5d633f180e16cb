"""The agent's graph state: data only (ids, texts, paths, scores, the levers used, attempts).

Backends, the history store and settings never live here: they travel as the run's context
(`agent.graph.AgentContext`). Everything below is plain, JSON-friendly data, so LangGraph's SQLite
checkpointer can store it and a session can resume in another process.

Vocabulary:
- a *shot* is one description rendered with one or more seeds (its sequence ids, seeds, images);
- an *attempt* is one render of a set of shots, judged together;
- a *lever* is one step of the escape ladder applied before an attempt, with its effect once judged.

The lists that only grow (`attempts`, `turns`) have a reducer (`grow`): a node returns only its new
items, and an explicit `Splice` for the few edits (a judged attempt replaces the rendered one, a
closed turn the open one, `/undo` drops the last turn). The graph stores them as LangGraph
`DeltaChannel`s (`agent.graph.graph_state`): a checkpoint keeps what a step added, never the whole
history again (`python -m benchmarks --only chat-checkpoints`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from zit_agent.agent.commands import GraphCommand, as_command
from zit_agent.defaults import AGENT, RENDER

Verdict = Literal["ok", "warn", "rut"]


class Description(BaseModel):
    """What goes into the assistant turn (or the plain prompt).

    `text`/`ids` are the writer's (or the person's) own part: the writer's ids verbatim, or None to
    tokenize `text`. `agent_phrase` is what the agent appended itself to state axis values the text
    left out (with its leading separator), tokenized on its own so the writer's ids stay untouched.
    """

    text: str
    ids: list[int] | None = None
    think: str = ""
    think_ids: list[int] | None = None
    writer: str | None = None  # the writer's model name, when a writer wrote it
    sampling: dict[str, Any] | None = None  # the writer's sampling for this description
    writer_record: dict[str, Any] | None = None  # instruction, seeds, notes (`draft_provenance`)
    agent_phrase: str = ""
    agent_stated: dict[str, str] = Field(default_factory=dict)  # axis -> value the agent added
    stated_axes: dict[str, str] = Field(default_factory=dict)  # axis -> value the whole states

    @property
    def full_text(self) -> str:
        return self.text.rstrip() + self.agent_phrase if self.agent_phrase else self.text


class Shot(BaseModel):
    description: Description
    sequence_ids: list[int] = Field(default_factory=list)
    sequence_text: str = ""
    seeds: list[int] = Field(default_factory=list)
    images: list[str] = Field(default_factory=list)
    image_hashes: list[str] = Field(default_factory=list)  # content hashes (history store keys)
    # A wildcard template's expansion this shot pictures (None: the run's idea), and its seed.
    idea: str | None = None
    idea_seed: int | None = None
    steps_spent: int = 0  # denoising steps its images took (candidates: previews included)
    candidates: dict[str, Any] | None = None  # the candidates report (`agent.candidates`)


class RenderKnobs(BaseModel):
    """Render settings the agent or the person may change between attempts."""

    width: int = RENDER.width
    height: int = RENDER.height
    layer: int = RENDER.layer
    noise: float = 0.0
    noise_seed: int = 0
    lora: str | None = None
    lora_strength: float = 1.0
    control: str | None = None  # a ControlNet control map (it fixes the composition)
    # Image-to-image: the start image (chat `/pick N`, `/vary subtle|strong`, or --init), how
    # much of it is redrawn, and an inpainting mask (from --mask; a pick clears it).
    init: str | None = None
    strength: float = RENDER.strength
    mask: str | None = None
    lora_gate: dict[str, Any] | None = None  # the LoRA's step gate (`StepGate` data; None: all)
    early_prompt: str | None = None  # the first `early_steps` steps' prompt ("": empty)
    early_steps: int = 0
    candidates: int = 0  # seeds previewed per shot, the n most different finished (0: off)
    preview_step: int = RENDER.preview_step
    adapter: list[Any] | None = None  # a diversity adapter [path, strength, gate] (configured)
    adapter_on: bool = False  # whether the adapter lever turned it on


class Lever(BaseModel):
    """One escape step: what was changed, and (after judging) what it did."""

    name: str  # a registered lever (`agent/levers.py`)
    detail: str
    values: dict[str, Any] = Field(default_factory=dict)
    effect: str | None = None


class Scores(BaseModel):
    """The rut detector's reading of one attempt (`agent.ruts.RutReport`, in short)."""

    verdict: Verdict
    reason: str = ""
    mean_similarity: float = 0.0
    max_similarity: float = 0.0
    vendi: float = 0.0
    near_duplicate_rate: float = 0.0
    count: int = 0  # images judged
    axes: list[str] = Field(default_factory=list)  # axes the report names (unstated or repeated)
    wider_max_similarity: float | None = None  # the newest image vs other ideas' recent images
    embedder: str = ""
    thresholds: dict[str, Any] = Field(default_factory=dict)
    # Per kind (layout, identity, shot, angle): `agent.ruts.KindReport` as plain data; empty when
    # no analyzer judged the images. `verdict` above is the worst measured kind.
    kinds: dict[str, dict[str, Any]] = Field(default_factory=dict)


class WriterRut(BaseModel):
    """The writer repeating itself: token overlap between its descriptions."""

    overlap: float
    threshold: float
    temperature: float  # the temperature the next call uses
    avoid: list[str] = Field(default_factory=list)


class Attempt(BaseModel):
    number: int
    shots: list[Shot]
    knobs: RenderKnobs
    levers: list[Lever] = Field(default_factory=list)
    scores: Scores | None = None

    @property
    def images(self) -> list[str]:
        return [path for shot in self.shots for path in shot.images]


class ChatTurn(BaseModel):
    """One exchange of a chat session and the state it left (for `/undo` and `--show`)."""

    message: str
    first_attempt: int = 0  # index into AgentState.attempts where this turn's attempts start
    attempts: list[int] = Field(default_factory=list)  # indices into AgentState.attempts
    shots: list[Shot] = Field(default_factory=list)
    knobs: RenderKnobs = Field(default_factory=RenderKnobs)
    seed: int = 0
    verdict: Verdict | None = None
    error: str | None = None


class Splice(BaseModel):
    """An explicit edit of a list that grows through `grow`: its items from `start` on become
    `items` (none: the list is cut there)."""

    start: int = Field(ge=0)
    items: list[Attempt | ChatTurn] = Field(default_factory=list)


def grow(current: list[Any], update: list[Any] | Splice | dict[str, Any]) -> list[Any]:
    """The reducer of the lists that only grow: a list is appended, a `Splice` edits (its data
    form too, as a checkpoint that could not revive the class hands it back)."""
    if isinstance(update, dict):
        update = Splice.model_validate(update)
    if isinstance(update, Splice):
        return [*current[: update.start], *update.items]
    return [*current, *update]


def grow_batch(current: list[Any], updates: list[Any]) -> list[Any]:
    """`grow` over a batch of updates, oldest first (the form LangGraph's `DeltaChannel` calls)."""
    for update in updates:
        current = grow(current, update)
    return current


class _Grows:
    """The mark of a list that only grows (`Annotated[list[X], GROWS]`): the graph reduces its
    updates with `grow` (`agent.graph.graph_state`)."""

    def __repr__(self) -> str:
        return "GROWS"


GROWS = _Grows()


def replace_last(items: list[Any], item: Attempt | ChatTurn) -> Splice:
    """The update that replaces the last of `items` with `item` (appends it to an empty list)."""
    return Splice(start=max(len(items) - 1, 0), items=[item])


class AgentState(BaseModel):
    # -- the request --------------------------------------------------------------------------
    idea: str
    shape: str = "think"
    n: int = Field(4, ge=1)
    seed: int = 0
    max_attempts: int = Field(AGENT.max_attempts, ge=1)
    ruts: bool = True
    chat: bool = False
    ladder: list[str] = Field(default_factory=lambda: list(AGENT.ladder))
    max_tokens: int = RENDER.max_tokens
    run_id: str = "run"  # names the images and the history-store session
    parts: dict[str, Any] = Field(default_factory=dict)  # which parts (specs only, for chat)
    # `idea` is a wildcard template: its expansion for each seed, in order (`agent.wildcards`).
    expansions: list[str] = Field(default_factory=list)

    # -- working values -----------------------------------------------------------------------
    temperature: float | None = None  # None: the writer's default sampling
    avoid: list[str] = Field(default_factory=list)
    knobs: RenderKnobs = Field(default_factory=RenderKnobs)
    shots: list[Shot] = Field(default_factory=list)  # what the next render draws
    pending_levers: list[Lever] = Field(default_factory=list)
    ladder_step: int = 0
    attempts: Annotated[list[Attempt], GROWS] = Field(default_factory=list)

    # -- outcome ------------------------------------------------------------------------------
    final_verdict: Verdict | None = None
    final_attempt: int | None = None  # index of the attempt whose images are returned
    exhausted: bool = False
    message: str = ""

    # -- chat ---------------------------------------------------------------------------------
    turns: Annotated[list[ChatTurn], GROWS] = Field(default_factory=list)
    command: GraphCommand | None = None  # the person's last parsed input (`agent.commands`)
    error: str | None = None

    @field_validator("command", mode="before")
    @classmethod
    def _stored_command(cls, value: Any) -> Any:
        """A command stored as data (by a checkpoint, or by sessions before the lever registry)."""
        return as_command(value) if isinstance(value, dict) else value

    def with_update(self, update: dict[str, Any]) -> AgentState:
        """This state with a node's update applied as the graph applies it (the lists marked
        `GROWS` through `grow`): for code that calls the nodes without LangGraph."""
        grown = {
            name: grow(getattr(self, name), value)
            for name, value in update.items()
            if GROWS in type(self).model_fields[name].metadata
        }
        return self.model_copy(update={**update, **grown})

    @property
    def last_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def run_start(self) -> int:
        """Index of this run's first attempt: 0, or in chat where the current turn's begin."""
        return self.turns[-1].first_attempt if self.chat and self.turns else 0

    @property
    def run_attempts(self) -> list[Attempt]:
        return self.attempts[self.run_start :]

    def latest_images(self) -> list[str]:
        """The images the person last saw: the newest turn that rendered (its last attempt's
        images), else the last attempt's. Chat's `/pick N` and `/vary ... N` count from 1 here."""
        for turn in reversed(self.turns):
            if turn.attempts:
                return self.attempts[turn.attempts[-1]].images
        return self.last_attempt.images if self.last_attempt else []

    def novelty_memory(self, window: int) -> dict[str, list[str]]:
        """Axis values stated in the last `window` images of this idea/session, newest last (the
        values that count as used recently)."""
        memory: dict[str, list[str]] = {}
        shots = [shot for attempt in self.attempts for shot in attempt.shots for _ in shot.images]
        for shot in shots[-window:]:
            for axis, value in shot.description.stated_axes.items():
                memory.setdefault(axis, []).append(value)
        return memory
