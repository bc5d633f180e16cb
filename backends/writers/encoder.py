"""`EncoderWriter`: the Z-Image text encoder's own Qwen3 weights write the prompts.

Z-Image's encoder is a chat-capable Qwen3 with tied embeddings, so its embedding matrix is also its
LM head (FACTS.md section 5). The writer wraps the loaded encoder in a causal-LM view whose
`model` is the encoder itself and whose `lm_head.weight` is the encoder's embedding parameter:
nothing is loaded or copied, one Qwen3 serves both jobs. Generation is transformers' `generate()`
(as `TransformersWriter`), the tokenizer and chat template are the image model's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from zit_agent.backends.base import Message
from zit_agent.backends.writers.hf import TransformersWriter
from zit_agent.backends.writers.parse import SpecialIds
from zit_agent.backends.writers.template import Prompt, render_prompt
from zit_agent.errors import UserError

if TYPE_CHECKING:
    from zit_agent.backends.zimage import ZImageBackend

NAME = "encoder"


class EncoderWriter(TransformersWriter):
    """A writer over a `ZImageBackend`'s text encoder. `open_think` as in `LlamaCppWriter`."""

    def __init__(self, backend: ZImageBackend, *, open_think: bool = False):
        self.backend = backend
        self.model = causal_lm_view(backend.pipe.text_encoder)
        self.vocab = backend.tokenizer
        self.name = f"{NAME}:{backend.model_id}"
        self.open_think = open_think
        self.special = SpecialIds.lookup(self.vocab.token_id, self.vocab.base_vocab_size)
        self._trusted, self.chat_template = _tokenizer_and_template(backend)

    @classmethod
    def from_backend(cls, backend: ZImageBackend | None, *, open_think: bool = False):
        if backend is None or not hasattr(backend, "pipe"):
            raise UserError(
                "the encoder writer writes with the Z-Image model's text encoder, and no Z-Image "
                "model is loaded",
                hint="load the image model first, or use a gguf: or hf: writer",
            )
        return cls(backend, open_think=open_think)

    @property
    def input_device(self):
        """Where the encoder runs: with CPU offload its weights wait on the CPU, but its hook
        moves them (and the inputs) to the accelerator, where the LM head's output lands."""
        return self.backend.device

    def prompt(self, messages: list[Message]) -> Prompt:
        return render_prompt(self.chat_template, messages, open_think=self.open_think)

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        return prompt.ids(
            lambda text: self._trusted.encode(text, add_special_tokens=False).ids,
            self.vocab.encode_text,
        )


def causal_lm_view(encoder):
    """A causal LM over `encoder`'s own modules: `model` is `encoder`, `lm_head.weight` its
    embedding parameter. A causal LM is returned as it is."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    if hasattr(encoder, "lm_head"):
        return encoder
    config = encoder.config
    if not getattr(config, "tie_word_embeddings", False):
        raise UserError(
            "the text encoder's embeddings are not tied to an LM head: it cannot write",
            hint="use a gguf: or hf: writer with this encoder",
        )
    with init_empty_weights():
        view = AutoModelForCausalLM.from_config(config)
    view.model = encoder
    view.lm_head.weight = encoder.get_input_embeddings().weight
    return view.eval()


def _tokenizer_and_template(backend: ZImageBackend):
    """The tokenizer with control tokens parsed (template text) and the chat template, both from
    the image model's tokenizer folder (or the pipeline's own tokenizer)."""
    from tokenizers import Tokenizer

    source = Path(str(backend.tokenizer.source))
    pipe_tokenizer = getattr(backend.pipe, "tokenizer", None)
    if source.is_file():
        trusted = Tokenizer.from_file(str(source))
        template = _read_template(source.parent)
    elif pipe_tokenizer is not None:
        trusted, template = pipe_tokenizer.backend_tokenizer, pipe_tokenizer.chat_template
    else:
        trusted, template = None, None
    if trusted is None or not template:
        raise UserError(
            "the Z-Image model's tokenizer has no chat template: its encoder cannot write",
            hint="use a gguf: or hf: writer",
        )
    return trusted, template


def _read_template(folder: Path) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    template = config.get("chat_template")
    return template if isinstance(template, str) else None
