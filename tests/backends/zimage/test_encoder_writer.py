"""The encoder as writer: the Z-Image text encoder's own Qwen3 weights write the prompt."""

from __future__ import annotations

import gc

import pytest
import torch

from zit_agent.backends.base import Sampling, Writer
from zit_agent.backends.writers import load_writer, parse_spec
from zit_agent.backends.writers.messages import build_messages
from zit_agent.errors import UserError

MESSAGES = build_messages("Describe the image.", "a red fox in snow")


@pytest.fixture(scope="module")
def writer(backend):
    return load_writer("encoder", backend=backend)


def reference_lm(encoder):
    """A `Qwen3ForCausalLM` built on its own from the encoder's weights (tied head)."""
    from transformers import Qwen3ForCausalLM

    torch.manual_seed(0)
    model = Qwen3ForCausalLM(encoder.config)
    model.model.load_state_dict(encoder.state_dict())
    model.tie_weights()
    return model.eval()


def test_is_a_writer_over_the_backends_own_encoder(writer, backend):
    assert isinstance(writer, Writer)
    encoder = backend.pipe.text_encoder
    assert writer.model.model is encoder
    head, embeddings = writer.model.lm_head.weight, encoder.get_input_embeddings().weight
    assert head is embeddings and head.data_ptr() == embeddings.data_ptr()
    assert not any(p.is_meta for p in writer.model.parameters())
    assert writer.fingerprint == backend.tokenizer.fingerprint


def test_logits_equal_a_qwen3_causal_lm_of_the_same_weights(writer, backend):
    ids = torch.tensor([[151644, 872, 198, 64, 8251, 151645, 198, 151644, 77091, 198]])
    with torch.inference_mode():
        ours = writer.model(ids).logits
        theirs = reference_lm(backend.pipe.text_encoder)(ids).logits
    assert ours.shape == (1, 10, 151936)
    assert torch.equal(ours, theirs)


def test_writes_the_same_ids_as_a_transformers_writer_of_the_same_weights(
    writer, backend, tiny_zimage_dir, tmp_path
):
    import shutil

    from zit_agent.backends.writers.hf import TransformersWriter

    reference_lm(backend.pipe.text_encoder).save_pretrained(tmp_path / "lm")
    for item in (tiny_zimage_dir / "tokenizer").iterdir():
        shutil.copyfile(item, tmp_path / "lm" / item.name)
    other = TransformersWriter.from_pretrained(str(tmp_path / "lm"))
    sampling = Sampling(max_new_tokens=12)
    ours = writer.write(MESSAGES, sampling, seed=3)
    assert ours.generated_ids == other.write(MESSAGES, sampling, seed=3).generated_ids
    assert ours.stats.new_tokens == 12 and ours.model == f"encoder:{tiny_zimage_dir}"
    assert writer.prompt_ids(writer.prompt(MESSAGES)) == other.prompt_ids(other.prompt(MESSAGES))


def qwen3_models() -> int:
    """Qwen3 models with real (not meta) weights alive in this process."""
    from transformers import Qwen3PreTrainedModel

    return sum(
        1
        for obj in gc.get_objects()
        if issubclass(type(obj), Qwen3PreTrainedModel)
        and not next(obj.parameters()).is_meta
        and getattr(obj, "base_model", obj) is obj
    )


def test_a_run_with_it_loads_one_qwen3(tiny_zimage_dir, qwen_tokenizer, monkeypatch):
    from transformers import PreTrainedModel

    from zit_agent.agent.drafting import expand_idea
    from zit_agent.backends.base import RenderOptions
    from zit_agent.backends.zimage import ZImageBackend

    gc.collect()
    before = qwen3_models()
    backend = ZImageBackend.from_pretrained(tiny_zimage_dir)
    assert qwen3_models() == before + 1

    def no_second_model(*args, **kwargs):
        raise AssertionError("the encoder writer loaded a model")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(no_second_model))
    writer = load_writer("encoder", backend=backend)
    result = expand_idea(
        writer,
        qwen_tokenizer,
        "a red fox",
        sampling=Sampling(max_new_tokens=8),
        seed=1,
        shape="answer",
    )
    images = backend.render(result.assembled.ids, [1], RenderOptions(width=64, height=64, steps=2))
    assert images[0].image.size == (64, 64)
    gc.collect()
    assert qwen3_models() == before + 1


def test_the_spec_and_a_missing_backend(backend):
    assert parse_spec("encoder") == ("encoder", "")
    with pytest.raises(UserError, match="no Z-Image model is loaded"):
        load_writer("encoder")


def test_open_think_opens_the_plan(backend):
    writer = load_writer("encoder", backend=backend, open_think=True)
    prompt = writer.prompt(MESSAGES)
    assert prompt.think_opened and writer.prompt_ids(prompt)[-2:] == [151667, 198]
