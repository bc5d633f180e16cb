"""The escape ladder: what the agent changes, step by step, when the images fall into a rut.

Steps, in the default order (`AGENT.ladder`; any order can be configured; each lever is registered
once in `agent/levers.py`, which also takes levers from installed packages):

1. `vary`: targeted variation. For the axes the rut report names (minus those the idea itself
   states: the idea's core stays), pick a new value per image, avoiding values used recently (the
   novelty memory over the last images of this idea and session), ask the writer (`vary`
   instruction) for a description that states them, check with the axis reader that it does, and
   state the missing ones itself when it does not (recorded in `Description.agent_stated`). So the
   step works with weak writers and with no writer at all. One description per image: one long
   description rendered with many seeds is what ruts are made of.
2. `shorter`: each description cut to about half its tokens at a sentence end (long rewrites cause
   ruts too); the writer's ids stay verbatim (a prefix), the agent's axis phrase is kept.
3. `noise`: the conditioning-noise lever of the image backend.
4. `layer`: a different text-encoder hidden layer.
5. `seeds`: new seeds.

Levers by kind: when the judge measured rut kinds on the images (`Scores.kinds`), `vary` picks its
axes from the kinds that are stuck (`kind_plan`): an identity rut varies the person axes (age,
presentation, ethnicity, hair, clothing) and tells the writer to describe a different person; a
shot rut varies shot size and framing, an angle rut the camera angle, each avoiding the measured
bins; a layout rut keeps the axes the report names. After the next attempt each lever's effect
says, per measured kind, whether it moved.

Levers accumulate (a shorter description keeps its varied axes). The ladder repeats from the top
when it runs out before the attempts do; `vary` then picks values not used yet. Each lever is
recorded with its effect once the next attempt is judged (`record_effects`).

Writer-side ruts: when the writer's descriptions overlap too much (token-bigram Jaccard), the next
writer call gets a higher temperature and an explicit avoid list (`writer_rut`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from zit_agent import axes as axis_reader
from zit_agent.agent.state import Attempt, Description, Lever, RenderKnobs, Scores, Shot, WriterRut

MAX_VARIED_AXES = 3
WRITER_OVERLAP_THRESHOLD = 0.6
TEMPERATURE_STEP = 0.3
MAX_TEMPERATURE = 1.5
NOISE_STRENGTH = 0.5
SEED_STRIDE = 1000
# Composition axes first: they are what a rut across seeds is made of.
AXIS_PRIORITY = ("shot_size", "camera_angle", "framing", "lighting", "time_of_day", "palette")
_WORD = re.compile(r"[a-zA-Z][a-zA-Z'-]{3,}")
# The axes each measured rut kind varies, and the axis values its measured bins stand for.
PERSON_AXES = ("subject_age", "gender_presentation", "ethnicity", "hair", "clothing")
KIND_AXES = {
    "identity": PERSON_AXES,
    "shot": ("shot_size", "framing"),
    "angle": ("camera_angle",),
}
MAX_KIND_AXES = 4
MEASURED_VALUES = {
    "shot_size": {
        "extreme close-up": "extreme close-up",
        "close-up": "close-up",
        "medium close-up": "medium close-up",
        "medium shot": "medium shot",
        "wide shot": "wide shot",
    },
    "framing": {
        "centre": "centered",
        "left": "rule of thirds left",
        "right": "rule of thirds right",
    },
    "camera_angle": {
        "high angle": "high angle",
        "eye level": "eye level",
        "low angle": "low angle",
    },
}
DIFFERENT_PERSON = (
    "The same person appears in {seen} of the images: describe a clearly different person "
    "(another age, look and build), not the one the previous descriptions suggest."
)


class Tokenizer(Protocol):
    def encode_text(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...


# A writer call as the ladder needs it: (idea, change_axes, previous, avoid, seed) -> Description.
VaryWriter = Callable[[str, dict[str, str], list[str], list[str], int], Description]


def next_lever(ladder: list[str], step: int) -> str:
    return ladder[step % len(ladder)]


# Which levers a measured rut kind tries first (docs/agent.md): a person is made in the prompt, so
# an identity rut varies the description; a composition (layout, shot size, angle) is set in the
# first steps, so those ruts try the composition levers first. Only levers the ladder holds.
KIND_FIRST: dict[str, tuple[str, ...]] = {
    "identity": ("vary",),
    "shot": ("candidates", "early"),
    "angle": ("candidates", "early"),
    "layout": ("candidates", "early"),
}
KIND_ORDER = ("identity", "shot", "angle", "layout")  # the most specific reading first


def choose_lever(
    ladder: list[str], step: int, kinds: dict[str, Any], used: set[str]
) -> tuple[str, str | None]:
    """(the lever to take, the rut kind it was taken for): the first lever a kind reading `rut`
    tries first that the ladder holds and this run has not taken yet; else (the ladder's next
    step, None)."""
    for kind in KIND_ORDER:
        if (kinds.get(kind) or {}).get("verdict") != "rut":
            continue
        for name in KIND_FIRST[kind]:
            if name in ladder and name not in used:
                return name, kind
    return next_lever(ladder, step), None


# -- levers by kind ------------------------------------------------------------------------------
class KindPlan(NamedTuple):
    """What the stuck measured kinds ask of `vary`."""

    kinds: list[str]  # the kinds reading warn or rut (layout excluded)
    axes: list[str]  # the axes they vary, in order
    avoid: dict[str, list[str]]  # axis -> values the measured bins stand for
    feedback: str | None  # for the writer (identity: describe a different person)


def kind_plan(kinds: dict[str, dict], core: str) -> KindPlan:
    """The levers the measured kinds call for (`Scores.kinds`); axes the core states stay."""
    stated = set(axis_reader.read_axes(core))
    stuck = [k for k in KIND_AXES if (kinds.get(k) or {}).get("verdict") in ("warn", "rut")]
    axes = [a for k in stuck for a in KIND_AXES[k] if a not in stated]
    avoid: dict[str, list[str]] = {}
    for kind in stuck:
        found = kinds[kind]
        if kind == "shot":
            _avoid(avoid, "shot_size", found.get("dominant"))
            framing = (found.get("sub_bins") or {}).get("framing") or {}
            _avoid(avoid, "framing", max(framing, key=framing.get) if framing else None)
        elif kind == "angle":
            pitch = (found.get("sub_bins") or {}).get("pitch") or {}
            _avoid(avoid, "camera_angle", max(pitch, key=pitch.get) if pitch else None)
    feedback = None
    if "identity" in stuck:
        identity = kinds["identity"]
        share = identity.get("share") or 0.0
        count = identity.get("count") or 0
        feedback = DIFFERENT_PERSON.format(seen=f"{round(share * count)} of {count}")
    return KindPlan(stuck, list(dict.fromkeys(axes))[:MAX_KIND_AXES], avoid, feedback)


def _avoid(avoid: dict[str, list[str]], axis: str, measured: str | None) -> None:
    value = MEASURED_VALUES[axis].get(measured or "")
    if value:
        avoid.setdefault(axis, []).append(value)


# -- 1. targeted variation -----------------------------------------------------------------------
def axes_to_vary(report_axes: list[str], idea: str, limit: int = MAX_VARIED_AXES) -> list[str]:
    """The axes to change: those the report names, minus the ones the idea states (its core),
    composition axes first."""
    core = set(axis_reader.read_axes(idea))
    candidates = [a for a in report_axes if a not in core]
    if not candidates:
        candidates = [a for a in AXIS_PRIORITY if a not in core]
    ranked = sorted(
        candidates,
        key=lambda a: AXIS_PRIORITY.index(a) if a in AXIS_PRIORITY else len(AXIS_PRIORITY),
    )
    return ranked[:limit]


def choose_values(
    axes: list[str], memory: dict[str, list[str]], count: int, seed: int
) -> list[dict[str, str]]:
    """`count` assignments axis -> value, different from each other and from recent values."""
    per_axis = {
        axis: axis_reader.pick_values(axis, avoid=memory.get(axis, []), k=count, seed=seed)
        for axis in axes
    }
    return [
        {axis: picked[i % len(picked)] for axis, picked in per_axis.items() if picked}
        for i in range(count)
    ]


def state_axes(description: Description, wanted: dict[str, str], tok: Tokenizer) -> Description:
    """`description` with every wanted axis value stated. Values its own text leaves out are stated
    by the agent in one short appended sentence (`agent_phrase`, tokenized on its own)."""
    missing = axis_reader.missing(description.text, wanted)
    phrase = ""
    if missing:
        sentence = ", ".join(missing.values())
        sentence = sentence[0].upper() + sentence[1:] + "."
        own = description.text.rstrip()
        if not own:
            phrase = sentence
        elif own.endswith((".", "!", "?")):
            phrase = f" {sentence}"
        else:
            phrase = f". {sentence}"
    described = description.model_copy(update={"agent_phrase": phrase, "agent_stated": missing})
    return described.model_copy(update={"stated_axes": axis_reader.read_axes(described.full_text)})


def content_ids(description: Description, tok: Tokenizer) -> list[int]:
    """The ids of the whole description: the writer's ids verbatim, then the agent's phrase."""
    if description.ids is None:
        return tok.encode_text(description.full_text.strip())
    extra = tok.encode_text(description.agent_phrase) if description.agent_phrase else []
    return [*description.ids, *extra]


def vary(
    idea: str,
    shots: list[Shot],
    report_axes: list[str],
    memory: dict[str, list[str]],
    count: int,
    seed: int,
    write: VaryWriter | None,
    tok: Tokenizer,
    avoid: list[str],
    core: str | None = None,
    plan: KindPlan | None = None,
) -> tuple[list[Shot], Lever]:
    """Step 1: one new description per image, each stating fresh values on the rutted axes.
    `core`: the text whose stated axes stay (default: the idea; in chat also the person's words).
    `plan`: the measured kinds that are stuck (`kind_plan`): their axes go first, their measured
    values are avoided."""
    axes = axes_to_vary(report_axes, core or idea)
    if plan is not None and plan.axes:
        axes = list(dict.fromkeys([*plan.axes, *axes]))[: max(MAX_VARIED_AXES, len(plan.axes))]
        memory = {a: [*memory.get(a, []), *plan.avoid.get(a, [])] for a in {*memory, *plan.avoid}}
    assignments = choose_values(axes, memory, count, seed)
    previous = [shot.description.full_text for shot in shots][-3:]
    used = [v for values in memory.values() for v in values]
    new_shots, by_agent = [], 0
    base_seed = shots[0].seeds[0] if shots and shots[0].seeds else seed
    for i, wanted in enumerate(assignments):
        source = shots[i % len(shots)] if shots else None  # (its wildcard expansion stays)
        if write is None:  # the current text (the idea, or a person's refinement), restated
            own = source.description.text if source else idea
            draft = Description(text=own)
        else:
            own_idea = source.idea if source and source.idea else idea
            draft = write(own_idea, wanted, previous, list(dict.fromkeys(used + avoid)), seed + i)
        described = state_axes(draft, wanted, tok)
        by_agent += bool(described.agent_stated)
        kept = {"idea": source.idea, "idea_seed": source.idea_seed} if source else {}
        new_shots.append(Shot(description=described, seeds=[base_seed + i], **kept))
    summary = "; ".join(", ".join(a.values()) for a in assignments)
    detail = f"axes {', '.join(axes)} -> {summary}"
    if by_agent:
        detail += f" (the agent stated the values itself in {by_agent} of {count})"
    values = {"axes": axes, "assignments": assignments, "stated_by_agent": by_agent}
    if plan is not None and plan.kinds:
        detail = f"measured {', '.join(plan.kinds)} stuck: {detail}"
        if plan.feedback:
            detail += "; the writer is told to describe a different person"
        values.update(kinds=plan.kinds, measured_avoid=plan.avoid, feedback=plan.feedback)
    return new_shots, Lever(name="vary", detail=detail, values=values)


# -- 2. shorter ----------------------------------------------------------------------------------
def shorter(shots: list[Shot], tok: Tokenizer) -> tuple[list[Shot], Lever]:
    """Step 2: each description cut to about half its tokens, at a sentence end when there is one.
    The writer's ids stay a verbatim prefix; the axis values stated before are stated again."""
    new_shots, before, after = [], 0, 0
    for shot in shots:
        desc = shot.description
        ids = desc.ids if desc.ids is not None else tok.encode_text(desc.text)
        kept = _half_at_sentence_end(ids, tok)
        cut = desc.model_copy(
            update={
                "text": tok.decode(kept).strip(),
                "ids": kept if desc.ids is not None else None,
                "agent_phrase": "",
                "agent_stated": {},
            }
        )
        cut = state_axes(cut, desc.stated_axes, tok)
        before += len(content_ids(desc, tok))
        after += len(content_ids(cut, tok))
        new_shots.append(
            shot.model_copy(update={"description": cut, "sequence_ids": [], "images": []})
        )
    detail = f"descriptions cut from {before} to {after} tokens in all"
    return new_shots, Lever(
        name="shorter", detail=detail, values={"before": before, "after": after}
    )


def _half_at_sentence_end(ids: list[int], tok: Tokenizer) -> list[int]:
    if len(ids) <= 8:
        return list(ids)
    half = max(8, len(ids) // 2)
    for end in range(half, 3, -1):
        if tok.decode(ids[end - 1 : end]).rstrip().endswith((".", "!", "?", ";")):
            return list(ids[:end])
    return list(ids[:half])


# -- 3.-5. render levers -------------------------------------------------------------------------
def noise(knobs: RenderKnobs, attempt_number: int) -> tuple[RenderKnobs, Lever]:
    strength = max(knobs.noise, NOISE_STRENGTH)
    new = knobs.model_copy(update={"noise": strength, "noise_seed": attempt_number})
    detail = f"conditioning noise strength {strength} (noise seed {attempt_number})"
    return new, Lever(name="noise", detail=detail, values={"strength": strength})


def layer(knobs: RenderKnobs) -> tuple[RenderKnobs, Lever]:
    """One layer earlier than the current one (-2 -> -3): Z-Image reads -2 by default."""
    new_layer = knobs.layer - 1
    new = knobs.model_copy(update={"layer": new_layer})
    detail = f"encoder hidden layer {knobs.layer} -> {new_layer}"
    return new, Lever(name="layer", detail=detail, values={"from": knobs.layer, "to": new_layer})


def new_seeds(shots: list[Shot], attempt_number: int) -> tuple[list[Shot], Lever]:
    offset = SEED_STRIDE * attempt_number
    new_shots = [
        shot.model_copy(update={"seeds": [s + offset for s in shot.seeds], "images": []})
        for shot in shots
    ]
    seeds = [s for shot in new_shots for s in shot.seeds]
    return new_shots, Lever(name="seeds", detail=f"new seeds {seeds}", values={"seeds": seeds})


# -- writer-side ruts ----------------------------------------------------------------------------
def token_overlap(a: list[int], b: list[int]) -> float:
    """Jaccard overlap of the two id sequences' bigrams (1.0: the same text)."""
    grams_a, grams_b = _bigrams(a), _bigrams(b)
    if not grams_a and not grams_b:
        return 1.0
    return len(grams_a & grams_b) / len(grams_a | grams_b)


def _bigrams(ids: list[int]) -> set[tuple[int, ...]]:
    return {tuple(ids[i : i + 2]) for i in range(len(ids) - 1)} or {tuple(ids)}


def writer_overlap(new: list[list[int]], previous: list[list[int]]) -> float:
    """The highest overlap between any two of the new descriptions, or a new and an older one."""
    pairs = [(a, b) for i, a in enumerate(new) for b in new[i + 1 :] + previous]
    return max((token_overlap(a, b) for a, b in pairs), default=0.0)


def writer_rut(
    new: list[Description],
    previous: list[Description],
    temperature: float,
    idea: str,
    tok: Tokenizer,
    threshold: float = WRITER_OVERLAP_THRESHOLD,
) -> WriterRut | None:
    """A `WriterRut` (with the pushed temperature and an avoid list) when the writer repeats itself;
    None when its descriptions differ enough. Only the writer's own ids count (not the agent's
    appended axis phrases)."""
    own = [_writer_ids(d, tok) for d in new if d.writer]
    if not own:
        return None
    overlap = writer_overlap(own, [_writer_ids(d, tok) for d in previous if d.writer])
    if overlap < threshold:
        return None
    return WriterRut(
        overlap=round(overlap, 3),
        threshold=threshold,
        temperature=min(MAX_TEMPERATURE, temperature + TEMPERATURE_STEP),
        avoid=repeated_words([d.text for d in new + previous if d.writer], idea),
    )


def _writer_ids(desc: Description, tok: Tokenizer) -> list[int]:
    return desc.ids if desc.ids is not None else tok.encode_text(desc.text)


def repeated_words(texts: list[str], idea: str, limit: int = 8) -> list[str]:
    """Words most of the texts share that the idea does not contain (what the writer keeps
    repeating)."""
    idea_words = {w.lower() for w in _WORD.findall(idea)}
    counts = Counter(w for t in texts for w in {w.lower() for w in _WORD.findall(t)})
    need = max(2, (len(texts) + 1) // 2)
    common = [w for w, c in counts.most_common() if c >= need and w not in idea_words]
    return common[:limit]


# -- outcome -------------------------------------------------------------------------------------
def record_effects(levers: list[Lever], before: Scores | None, after: Scores) -> list[Lever]:
    """The levers applied before an attempt, with what the attempt's reading showed."""
    if before is None:
        effect = f"verdict {after.verdict} (mean similarity {after.mean_similarity:.3f})"
    else:
        effect = (
            f"{before.verdict} -> {after.verdict}: mean similarity "
            f"{before.mean_similarity:.3f} -> {after.mean_similarity:.3f}, "
            f"vendi {before.vendi:.2f} -> {after.vendi:.2f}"
        )
    moves = kind_moves(before, after)
    if moves:
        effect += "; measured: " + "; ".join(moves)
    return [lever.model_copy(update={"effect": lever.effect or effect}) for lever in levers]


def kind_moves(before: Scores | None, after: Scores) -> list[str]:
    """Per measured kind, whether it moved between two readings (its verdict, its dominant bin or
    its share changed), e.g. `identity rut -> ok (moved: share 1.00 -> 0.25)`."""
    if before is None:
        return []
    found = []
    for kind in KIND_AXES:
        was, now = before.kinds.get(kind), after.kinds.get(kind)
        if not was or not now:
            continue
        key = ("verdict", "dominant", "share")
        moved = any(was.get(k) != now.get(k) for k in key)
        detail = f"share {_share(was)} -> {_share(now)}"
        if was.get("dominant") or now.get("dominant"):
            detail = f"{was.get('dominant')} -> {now.get('dominant')}, {detail}"
        word = "moved" if moved else "did not move"
        found.append(f"{kind} {was['verdict']} -> {now['verdict']} ({word}: {detail})")
    return found


def _share(kind: dict) -> str:
    share = kind.get("share")
    return "-" if share is None else f"{share:.2f}"


def most_varied(attempts: list[Attempt]) -> int:
    """Index of the attempt whose images differ most (highest Vendi score, then lowest mean
    similarity); the last attempt when none was judged."""
    judged = [(i, a.scores) for i, a in enumerate(attempts) if a.scores is not None]
    if not judged:
        return len(attempts) - 1
    return max(judged, key=lambda item: (item[1].vendi, -item[1].mean_similarity))[0]
