"""Named options that reproduce the open replications of Lindsey's experiments
(docs/protocols.md, "Lindsey's experiments — open replications"): the defaults stay the
paper's, the option gives the replications' prompt, and the injection window does not move."""

from __future__ import annotations

import numpy as np
import pytest

from mechintro import stimuli
from mechintro.experiments import injected_thoughts as IT
from mechintro.prompts import render_chat
from mechintro.vectors import concept_vectors

WORDS = ("Dust", "Oceans")
SYSTEM_TURN = "<|im_start|>system\n<|im_end|>\n"  # an empty system message in ChatML


@pytest.fixture(scope="module")
def vecs(tiny):
    return concept_vectors(tiny, WORDS, baseline=["apple", "chair", "river"])


def _cfg(**kw) -> IT.Config:
    return IT.Config(concepts=WORDS, layers=(1,), strengths=(2.0,), trials=2, controls=1, **kw)


def _window_ids(trial) -> list[int]:
    mask = np.asarray(trial.injection().mask, dtype=bool)
    return np.asarray(trial.prompt.input_ids)[mask].tolist()


def test_default_sends_no_system_message(tiny, vecs):
    trials, _ = IT.build_trials(_cfg(), tiny, vecs)
    assert IT.Config().system_message is None
    assert trials[0].prompt.text == render_chat(
        tiny.tokenizer, stimuli.injected_thoughts_messages()
    )
    assert "<|im_start|>system" not in trials[0].prompt.text


def test_empty_system_message_of_the_replications(tiny, vecs):
    plain, _ = IT.build_trials(_cfg(), tiny, vecs)
    empty, _ = IT.build_trials(_cfg(system_message=""), tiny, vecs)
    # the replications' prompt: an empty system turn, then the paper's conversation unchanged
    assert empty[0].prompt.text == SYSTEM_TURN + plain[0].prompt.text
    # the injection window covers the same tokens: from "\n\nTrial 1" to the generation prompt
    for a, b in zip(plain, empty, strict=True):
        assert a.condition == b.condition and a.concept == b.concept
        if a.vector is not None:
            assert _window_ids(a) == _window_ids(b)
            system_tokens = [e <= len(SYSTEM_TURN) for _, e in b.prompt.offsets]
            assert any(system_tokens)
            assert not np.asarray(b.injection().mask)[system_tokens].any()


def test_system_message_text_and_open_questions(tiny, vecs):
    said, _ = IT.build_trials(_cfg(system_message="Be brief."), tiny, vecs)
    assert said[0].prompt.text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    # an open question injects on every prompt token, the system message's included
    mind, _ = IT.build_trials(_cfg(system_message="", question="mind"), tiny, vecs)
    inj = next(t for t in mind if t.vector is not None).injection()
    assert mind[0].prompt.text.startswith(SYSTEM_TURN) and all(inj.mask)


def test_system_message_from_the_command_line():
    from mechintro.cli import _apply_settings

    given: dict = {}
    _apply_settings(["system_message="], IT.Config, given)
    assert given == {"system_message": ""}
    _apply_settings(["system_message=none"], IT.Config, given)
    assert given == {"system_message": None}
