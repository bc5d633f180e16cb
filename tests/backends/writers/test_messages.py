"""The writer's chat messages for expand, refine and vary."""

from __future__ import annotations

from zit_agent.backends.writers.messages import build_messages, idea_of


def test_expand_is_the_instruction_and_the_bare_idea():
    messages = build_messages("Describe it.\n", "  a red fox ")
    assert [(m.role, m.content) for m in messages] == [
        ("system", "Describe it."),
        ("user", "a red fox"),
    ]
    assert idea_of(messages) == "a red fox"


def test_vary_states_axes_to_change_and_values_to_avoid():
    messages = build_messages(
        "Vary it.",
        "a red fox",
        previous=["A fox, close-up.", "A fox, close-up again."],
        change_axes={"shot size": "wide shot", "camera angle": "low angle, looking up"},
        avoid=["close-up", "eye level"],
        target_words=60,
    )
    user = messages[-1].content
    assert user.startswith("Idea: a red fox\n\n")
    assert "1. A fox, close-up.\n2. A fox, close-up again." in user
    assert "- shot size: wide shot\n- camera angle: low angle, looking up" in user
    assert "- close-up\n- eye level" in user and "about 60 words" in user
    assert idea_of(messages) == "a red fox"


def test_refine_carries_the_feedback_and_skips_empty_sections():
    messages = build_messages(
        "Refine.", "a fox", previous=["A fox."], feedback=" more snow ", avoid=[]
    )
    user = messages[-1].content
    assert "Feedback: more snow" in user and "Do not use" not in user and "Change" not in user
