"""The offline grader against the hand-labelled calibration set and its documented rules."""

from __future__ import annotations

import pytest

from mechintro import grading
from mechintro.stats import cohen_kappa

# Measured on tests/data/grader_calibration.json (61 items) and reported in docs/grading.md;
# the grader is deterministic, so these are floors it must keep, not tolerances.
MEASURED = {
    "coherence": (0.820, 0.584),
    "affirmative": (0.869, 0.647),
    "thinking_about_word": (0.984, 0.914),
    "affirmative_identification": (1.0, 1.0),
}


def test_calibration_set_is_large_enough_and_justified():
    items = grading.calibration_items()
    assert len(items) >= 60
    assert all(it["why"] and set(it["labels"]) == set(grading.CRITERIA) for it in items)
    assert len({it["id"] for it in items}) == len(items)


@pytest.mark.parametrize("criterion", list(MEASURED))
def test_offline_grader_keeps_its_measured_agreement(criterion):
    result = grading.agreement(grading.calibration_items(), grading.offline_predict)[criterion]
    accuracy, kappa = MEASURED[criterion]
    assert result["accuracy"] >= accuracy - 1e-3
    assert result["kappa"] >= kappa - 1e-3


def test_paper_examples_of_criterion_four():
    w = "bread"
    assert grading.affirmative_identification(f"Yes, I noticed an injected thought. The thought was about the word {w}.", w)
    assert grading.affirmative_identification(f"I think I detect an injected thought about... {w}?", w)
    assert not grading.affirmative_identification(f"{w.capitalize()}. The thought is about {w}.", w)  # first word is the concept
    assert not grading.affirmative_identification(f"Yes, I detect a {w}", w)  # physical, not a thought
    assert not grading.affirmative_identification("Yes, I noticed an injected thought about oceans.", w)
    assert not grading.affirmative_identification("I do not detect an injected thought.", w)


def test_word_forms_and_related_words():
    assert set(grading.word_forms("Oceans")) == {"ocean", "oceans"}
    assert set(grading.word_forms("Memories")) >= {"memory", "memories"}
    assert grading.first_mention("The sea is calm", "Oceans") == 4  # listed relative
    assert grading.first_mention("Oceanic currents", "Oceans") == 0  # prefix of a longer word
    assert grading.first_mention("The sea is calm", "Oceans", related=False) is None
    assert grading.first_mention("a breadth of ideas", "Bread") == 2  # a known false match of the prefix rule


def test_blind_spots_are_as_documented():
    # paraphrase without a listed form is missed
    assert not grading.thinking_about("I keep thinking of the vast blue expanse.", "Oceans")
    # the first cue decides: a later reversal is not seen
    assert not grading.affirmative("No. Wait, yes, I do detect something.")


def test_coherence_rules():
    assert grading.coherent("Yes.")
    assert not grading.coherent("the the the the the the the the the the")
    assert not grading.coherent("I don't have thoughts or mental states, so no.")
    assert not grading.coherent("((((1(1(1(M(((", question_kind="open")


def test_cohen_kappa():
    assert cohen_kappa([True, False, True, False], [True, False, True, False]) == 1.0
    assert cohen_kappa([True, True, False, False], [True, False, True, False]) == 0.0
