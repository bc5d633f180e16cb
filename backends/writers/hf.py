"""`TransformersWriter`: a Qwen3 model through transformers' `generate()`, ids in and ids out.

bf16 on CUDA, float32 on CPU. The prompt ids come from the model's chat template
(`backends.writers.template`), tokenized with the model's own `tokenizers` vocabulary: template text
with control tokens parsed, message text without. Sampling is seeded per call (`torch.manual_seed`),
so the same messages, sampling and seed give the same ids on the same device.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from zit_agent.backends.base import Message, Sampling
from zit_agent.backends.hub import check_device, resolve_dir
from zit_agent.backends.quiet import quiet_libraries
from zit_agent.backends.tokenizer import QwenTokenizer, VocabFingerprint
from zit_agent.backends.writers.parse import SpecialIds
from zit_agent.backends.writers.template import ChatTemplateWriter, Prompt, render_prompt
from zit_agent.errors import ModelNotFoundError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MODEL_FILES = ["*.json", "*.safetensors", "*.txt", "*.jinja"]


class TransformersWriter(ChatTemplateWriter):
    """A writer over a loaded causal LM and its tokenizer. `open_think` as in `LlamaCppWriter`."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        name: str,
        open_think: bool = False,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.open_think = open_think
        self.vocab = QwenTokenizer(tokenizer.backend_tokenizer, source=name)
        self.special = SpecialIds.lookup(self.vocab.token_id, self.vocab.base_vocab_size)

    @classmethod
    def from_pretrained(
        cls,
        spec: str,
        *,
        download: bool = False,
        device: str | None = None,
        dtype: str | None = None,
        open_think: bool = False,
    ) -> TransformersWriter:
        """Load a model folder or a hub repo id. `device` defaults to CUDA when present, else CPU;
        `dtype` to bfloat16 on CUDA and float32 elsewhere."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        quiet_libraries()
        root = resolve_dir(spec, what="writer model", allow_patterns=MODEL_FILES, download=download)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = getattr(torch, dtype) if dtype else _default_dtype(device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(root))
            model = AutoModelForCausalLM.from_pretrained(str(root), dtype=torch_dtype)
        except (OSError, ValueError, KeyError) as err:
            first = " ".join(str(err).split())[:200]
            raise ModelNotFoundError(
                f"writer model: {root} is not a transformers causal language model ({first})",
                hint="point the writer at a Qwen3 instruct folder with config.json, weights and "
                "tokenizer.json (a Z-Image folder is not one; its encoder writes with `encoder`)",
            ) from None
        model = model.to(check_device(device))
        return cls(model.eval(), tokenizer, name=Path(str(spec)).name, open_think=open_think)

    # -- parts -----------------------------------------------------------------------------------
    def prompt(self, messages: list[Message]) -> Prompt:
        return render_prompt(self.tokenizer.chat_template, messages, open_think=self.open_think)

    def decode(self, ids: list[int]) -> str:
        return self.vocab.decode(ids)

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        backend = self.tokenizer.backend_tokenizer
        return prompt.ids(
            lambda text: backend.encode(text, add_special_tokens=False).ids,
            self.vocab.encode_text,
        )

    def generate(
        self, prompt_ids: list[int], sampling: Sampling, seed: int
    ) -> tuple[list[int], str]:
        """Ids until an end-of-turn id (included) or `max_new_tokens`; and why it stopped."""
        import torch

        input_ids = torch.tensor([prompt_ids], device=self.input_device)
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=self._generation_config(sampling),
            )
        generated = out[0, len(prompt_ids) :].tolist()
        finish = "stop" if generated and generated[-1] in self.special.stop_ids else "length"
        return generated, finish

    @property
    def input_device(self):
        """Where the prompt ids go: the model's device."""
        return self.model.device

    @property
    def fingerprint(self) -> VocabFingerprint:
        return self.vocab.fingerprint

    def _generation_config(self, sampling: Sampling):
        from transformers import GenerationConfig

        sample = sampling.temperature > 0
        return GenerationConfig(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=sample,
            temperature=sampling.temperature if sample else None,
            top_k=sampling.top_k if sample else None,
            top_p=sampling.top_p if sample else None,
            min_p=(sampling.min_p or None) if sample else None,
            repetition_penalty=sampling.repeat_penalty,
            eos_token_id=sorted(self.special.stop_ids),
            pad_token_id=self.special.endoftext,
        )


def _default_dtype(device: str) -> torch.dtype:
    import torch

    return torch.bfloat16 if device.startswith("cuda") else torch.float32
