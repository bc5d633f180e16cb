"""The writer's chat messages: an instruction from `prompts/` as the system turn, then one user turn
with the idea and whatever the task adds (previous descriptions, feedback, axes to change, values to
avoid, a target length).

With nothing to add, the user turn is the idea itself. Otherwise it is a few labelled sections, the
idea first (`idea_of` reads it back).
"""

from __future__ import annotations

from zit_agent.backends.base import Message

IDEA_LABEL = "Idea:"


def build_messages(
    instruction: str,
    idea: str,
    *,
    previous: list[str] | None = None,
    feedback: str | None = None,
    change_axes: dict[str, str] | None = None,
    avoid: list[str] | None = None,
    target_words: int | None = None,
) -> list[Message]:
    """System = `instruction`; user = the idea and the task's material.

    - `previous`: earlier descriptions, oldest first (refine revises the last one; vary moves away
      from all of them).
    - `feedback`: what the user wants changed (refine).
    - `change_axes`: axis -> the new value the description must state (vary), e.g.
      `{"camera angle": "low angle, looking up"}`.
    - `avoid`: phrases or values used recently that the new description must not repeat.
    - `target_words`: the description's length in words, roughly.
    """
    sections = [
        _numbered("Previous descriptions (oldest first)", previous),
        _labelled("Feedback", feedback),
        _bullets(
            "Change these aspects to exactly these values",
            [f"{axis}: {value}" for axis, value in (change_axes or {}).items()],
        ),
        _bullets("Do not use these again", avoid),
        _labelled("Length", f"about {target_words} words" if target_words else None),
    ]
    sections = [s for s in sections if s]
    idea = idea.strip()
    user = "\n\n".join([f"{IDEA_LABEL} {idea}", *sections]) if sections else idea
    return [Message(role="system", content=instruction.strip()), Message(role="user", content=user)]


def idea_of(messages: list[Message]) -> str:
    """The idea in the last user message built by `build_messages` (or that message whole)."""
    content = next(m.content for m in reversed(messages) if m.role == "user")
    if not content.startswith(IDEA_LABEL):
        return content
    return content[len(IDEA_LABEL) :].split("\n\n", 1)[0].strip()


def _labelled(label: str, text: str | None) -> str:
    return f"{label}: {text.strip()}" if text and text.strip() else ""


def _numbered(label: str, items: list[str] | None) -> str:
    items = [i.strip() for i in items or [] if i.strip()]
    if not items:
        return ""
    return f"{label}:\n" + "\n".join(f"{n}. {item}" for n, item in enumerate(items, 1))


def _bullets(label: str, items: list[str] | None) -> str:
    items = [i.strip() for i in items or [] if i.strip()]
    return f"{label}:\n" + "\n".join(f"- {item}" for item in items) if items else ""
