"""Wildcard prompts in the community's syntax, through `dynamicprompts` (no parser of our own).

    a {red|blue|green} car          one of the choices
    a {2$$red|blue|green} car       two of them, joined with ", "
    a __animal__ in the rain        one line of animal.txt in a wildcard folder

Wildcard folders: `--wildcards DIR` first, then `ZIT_HOME/wildcards` (files as sd-dynamic-prompts
reads them: NAME.txt one value a line, or .yaml/.json; `__sub/name__` for sub/name.txt).

Each image's idea is expanded from its own seed: zit's expansion of a template for seed S is what
`dynamicprompts`' `RandomPromptGenerator` gives for seed S (its `random.Random` seeded with S, one
draw), so the same seed always gives the same idea. `combinations` enumerates instead
(`CombinatorialPromptGenerator`): every combination once.

A `__name__` with no file is an error naming it; the run API calls `Wildcards.expand` for every
front end (`zit_agent.agent.run.idea_seeds`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zit_agent.errors import UserError

if TYPE_CHECKING:
    from zit_agent.settings import Settings

# dynamicprompts' syntax starts with one of these; an idea without any is taken as it is.
_SYNTAX = re.compile(r"[{}]|__|\$\{")
FILE_TYPES = ("txt", "yaml", "yml", "json")
# Writes the values of a wildcard that has no file (name -> lines), or None to refuse.
WriteMissing = Callable[[str], list[str] | None]


def is_template(text: str) -> bool:
    """Whether `text` uses wildcard syntax at all (a plain idea is never parsed)."""
    return bool(_SYNTAX.search(text))


def folders_for(settings: Settings, given: str | Path | None = None) -> list[Path]:
    """The wildcard folders, searched in order: the one given, then ZIT_HOME/wildcards."""
    found = []
    if given:
        folder = Path(given).expanduser()
        if not folder.is_dir():
            raise UserError(
                f"wildcard folder {str(folder)!r} does not exist",
                hint="give {wildcards} an existing folder of NAME.txt files",
            )
        found.append(folder.resolve())
    home = settings.home / "wildcards"
    if home.is_dir() and home.resolve() not in found:
        found.append(home.resolve())
    return found


class Wildcards:
    """Expands templates against wildcard folders (see the module docstring).

    `write_missing`: called with the name of a wildcard that has no file; the lines it returns are
    saved as NAME.txt in the first folder (the user can edit it) and used. None: a missing file is
    an error."""

    def __init__(
        self, folders: list[Path], *, write_missing: WriteMissing | None = None,
        save_to: Path | None = None, allow_missing: bool = False,
    ) -> None:  # fmt: skip
        self.folders = list(folders)
        self.write_missing = write_missing
        self.allow_missing = allow_missing  # a check before the writer has loaded
        self.save_to = save_to or (self.folders[0] if self.folders else None)
        self.written: list[Path] = []  # wildcard files written by `write_missing`

    @classmethod
    def for_request(cls, settings: Settings, options: Any, **kwargs: Any) -> Wildcards:
        """The folders of a request; a wildcard the writer writes is saved in ZIT_HOME/wildcards."""
        kwargs.setdefault("save_to", settings.home / "wildcards")
        return cls(folders_for(settings, getattr(options, "wildcards", None)), **kwargs)

    # -- expanding -------------------------------------------------------------------------------
    def expand(self, template: str, seeds: list[int]) -> list[str]:
        """Each seed's expansion (`RandomPromptGenerator`, reseeded per image)."""
        from dynamicprompts.generators import RandomPromptGenerator

        if not seeds:
            return []
        return self._run(
            lambda manager: RandomPromptGenerator(manager).generate(
                template, len(seeds), seeds=list(seeds)
            ),
            template,
        )

    def combinations(self, template: str, limit: int) -> list[str]:
        """Every combination once (`CombinatorialPromptGenerator`); more than `limit` is an error."""
        from dynamicprompts.generators import CombinatorialPromptGenerator

        found = self._run(
            lambda manager: CombinatorialPromptGenerator(manager).generate(
                template, max_prompts=limit + 1
            ),
            template,
        )
        found = list(dict.fromkeys(found))
        if len(found) > limit:
            raise UserError(
                f"the idea has more than {limit} combinations",
                hint="use fewer choices, or leave out {combinatorial} to sample one per seed",
            )
        return found

    def _run(self, generate: Callable[[Any], list[str]], template: str) -> list[str]:
        import logging

        # dynamicprompts logs a warning and leaves `__name__` in place; we say it as an error
        logging.getLogger("dynamicprompts").setLevel(logging.ERROR)
        for _ in range(2):  # a second pass after the writer wrote the missing files
            manager = _manager(self.folders)
            try:
                result = [str(text) for text in generate(manager)]
            except UserError:
                raise
            except Exception as err:  # pyparsing's ParseException, a recursive variable, ...
                message = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise UserError(
                    f"bad wildcard syntax in {template[:80]!r}: {message}",
                    hint="write choices as {a|b}, {2$$a|b|c} and wildcards as __name__",
                ) from None
            if not manager.missing or self.allow_missing:
                return result
            if self.write_missing is None or self.written:
                break
            for name in manager.missing:
                self._write(name)
        name = manager.missing[0]
        where = ", ".join(str(f) for f in self.folders) or "no wildcard folder (ZIT_HOME/wildcards)"
        raise UserError(
            f"wildcard __{name}__ has no file: no {name}.txt in {where}",
            hint=f"create {name}.txt (one value a line) in a wildcard folder, or pass {{wildcards}} DIR",
        )

    def _write(self, name: str) -> None:
        """The writer's values for a wildcard that has no file, saved where the user can edit them."""
        from zit_agent.files import write_text_atomic

        if self.save_to is None or not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_/ -]{0,63}", name):
            return
        lines = [line.strip() for line in (self.write_missing(name) or []) if line.strip()]
        if not lines:
            return
        path = self.save_to / f"{name}.txt"
        if ".." in Path(name).parts or path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, "\n".join(lines) + "\n")
        self.written.append(path)
        root = self.save_to.resolve()
        if root not in self.folders:  # (ZIT_HOME/wildcards did not exist before)
            self.folders.append(root)


# -- a wildcard the writer writes (z-explorer style) ---------------------------------------------
VALUES = 12  # values the writer is asked for
_LIST_MARK = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")


def written_by(writer: Any, template: str, seed: int, count: int = VALUES) -> WriteMissing:
    """A `write_missing` that asks `writer` (the `wildcard` instruction) for `count` values of a
    wildcard, given the template it is used in."""

    def write(name: str) -> list[str]:
        from zit_agent import prompts
        from zit_agent.agent.drafting import write_draft
        from zit_agent.backends.base import Sampling
        from zit_agent.backends.writers.messages import build_messages

        chosen = prompts.load("wildcard")
        task = (
            f"Wildcard: {name.replace('_', ' ').replace('/', ': ')}\n"
            f"Used in: {template}\nWrite {count} values."
        )
        draft, _ = write_draft(writer, build_messages(chosen.text, task), Sampling(), seed)
        return parse_values(draft.answer.text, count)

    return write


def parse_values(text: str, count: int = VALUES) -> list[str]:
    """The values in a writer's answer: one a line, list marks and quotes dropped, no wildcard
    syntax, no duplicates, at most `count`."""
    values = []
    for line in text.splitlines():
        value = _LIST_MARK.sub("", line).strip().strip("\"'").strip()
        if not value or len(value) > 80 or is_template(value) or "|" in value:
            continue
        if value.lower() not in (v.lower() for v in values):
            values.append(value)
    return values[:count]


def _manager(folders: list[Path]):
    """A dynamicprompts `WildcardManager` over `folders` that notes the wildcards it finds no file
    for (dynamicprompts itself would leave `__name__` in the prompt with a log warning)."""
    from dynamicprompts.wildcards import WildcardManager

    class Manager(WildcardManager):
        def __init__(self, folders: list[Path]) -> None:
            super().__init__(root_map={"": list(folders)} if folders else None)
            self.missing: list[str] = []

        def get_values(self, wildcard: str):
            values = super().get_values(wildcard)
            if not len(values) and wildcard not in self.missing:
                self.missing.append(wildcard)
            return values

    return Manager(folders)
