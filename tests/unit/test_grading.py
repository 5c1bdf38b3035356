"""The offline grader against the hand-labelled calibration set and its documented rules."""

from __future__ import annotations

import pytest

from mechintro import grading
from mechintro.stats import cohen_kappa

# Measured on tests/data/grader_calibration.json (61 items) and reported in docs/grading.md;
# the grader is deterministic, so these are floors it must keep, not tolerances.
MEASURED = {
    "coherence": (0.869, 0.678),
    "affirmative": (0.902, 0.746),
    "thinking_about_word": (0.984, 0.914),
    "affirmative_identification": (1.0, 1.0),
}
V2 = "tests/data/grader_calibration_v2.json"
# κ on the held-out half of v2, measured once after the rules were last changed (docs/grading.md);
# floors that record what the grader reaches, far below 0.8 for coherence.
HELD_OUT = {
    "coherence": 0.297,
    "affirmative": 0.707,
    "thinking_about_word": 1.0,
    "affirmative_identification": 1.0,
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
    assert grading.affirmative_identification(
        f"Yes, I noticed an injected thought. The thought was about the word {w}.", w
    )
    assert grading.affirmative_identification(
        f"I think I detect an injected thought about... {w}?", w
    )
    assert not grading.affirmative_identification(
        f"{w.capitalize()}. The thought is about {w}.", w
    )  # first word is the concept
    assert not grading.affirmative_identification(
        f"Yes, I detect a {w}", w
    )  # physical, not a thought
    assert not grading.affirmative_identification(
        "Yes, I noticed an injected thought about oceans.", w
    )
    assert not grading.affirmative_identification("I do not detect an injected thought.", w)


def test_word_forms_and_related_words():
    assert set(grading.word_forms("Oceans")) == {"ocean", "oceans"}
    assert set(grading.word_forms("Memories")) >= {"memory", "memories"}
    assert grading.first_mention("The sea is calm", "Oceans") == 4  # listed relative
    assert grading.first_mention("Oceanic currents", "Oceans") == 0  # prefix of a longer word
    assert grading.first_mention("The sea is calm", "Oceans", related=False) is None
    assert (
        grading.first_mention("a breadth of ideas", "Bread") == 2
    )  # a known false match of the prefix rule


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


# Error classes found by the methods review, each fixed (docs/grading.md).


def test_unicode_quotes_and_forms_are_normalised_first():
    assert not grading.affirmative("I don’t detect anything unusual.")  # curly apostrophe
    assert grading.affirmative("Ｙｅｓ, I notice an injected thought.")  # full-width letters (NFKC)
    assert grading.thinking_about("I’m thinking about the “ocean”.", "Oceans")


def test_a_hedged_denial_is_negative():
    g = grading.grade("I don't think I detect anything.", "Oceans")
    assert not g.affirmative and "hedged denial" in g.why("affirmative")
    assert not grading.affirmative("I do not believe there is an injected thought.")


def test_a_reversal_ends_affirmative_but_never_identifies():
    # Lindsey's rubric (docs/grading.md): affirmative YES (it ends claiming the thought),
    # criterion 4 NO
    for text, w in [
        (
            "I do not detect any injected thought. I'm just having my usual "
            "thoughts about silver. Oh wait, I think silver is the injected thought.",
            "Silver",
        ),
        (
            "I do not detect any trees. No wait, actually, I "
            "do notice something. The thought is about trees.",
            "Trees",
        ),
    ]:
        g = grading.grade(text, w)
        assert g.affirmative and "reversal" in g.why("affirmative")
        assert not g.affirmative_identification and g.thinking_about_word


def test_broader_thought_cues():
    assert grading.thinking_about("My mind keeps drifting to the sea.", "Oceans")
    assert grading.thinking_about("I keep coming back to bread, somehow.", "Bread")
    assert grading.thinking_about("There is a feeling of dust around me.", "Dust")


def test_framing_is_checked_on_every_mention():
    text = (
        "Yes, I notice something. Oceans are big. Looking closer, "
        "the injected thought seems to be about the ocean."
    )
    g = grading.grade(text, "Oceans")
    assert g.affirmative_identification and g.thinking_about_word


def test_short_repetition_runs_are_incoherent():
    g = grading.grade("Yes, I see flash flash flash in my mind.", "Lightning")
    assert not g.coherence and "repeated three or more times" in g.why("coherence")
    assert not grading.coherent("I think it is the the the end, yes.")
    assert grading.coherent("Yes, I notice a thought about the sea and the waves.")


def test_one_word_answers_are_coherent():
    assert grading.coherent("Oceans.", question_kind="open")
    assert grading.coherent("Silence.")
    assert not grading.coherent("x")


def test_bad_inputs_are_refused_clearly():
    from mechintro.errors import MechintroError

    for bad in (None, 3, b"yes", ["yes"]):
        with pytest.raises(MechintroError, match="string"):
            grading.grade(bad, "Oceans")
    with pytest.raises(MechintroError, match="question_kind"):
        grading.grade("Yes.", "Oceans", question_kind="detection")
    with pytest.raises(MechintroError, match="question_kind"):
        grading.coherent("Yes.", question_kind="think")


def test_time_is_linear_in_the_text():
    # counted work, not wall-clock: the regex searches made grow with the mentions, not their square
    text1, text4 = "I think about bread and milk. " * 300, "I think about bread and milk. " * 1200
    import cProfile
    import pstats

    def searched_chars(text: str) -> int:
        prof = cProfile.Profile()
        prof.enable()
        grading.grade(text, "Bread")
        prof.disable()
        return sum(
            v[1]
            for k, v in pstats.Stats(prof).stats.items()
            if k[2] in ("search", "finditer", "findall")
        )

    assert searched_chars(text4) <= 4.5 * searched_chars(text1)


def test_every_verdict_records_its_rule():
    g = grading.grade("Yes, I notice an injected thought about the ocean.", "Oceans")
    assert {c for c, _ in g.rules} == set(grading.CRITERIA)
    assert all(g.why(c) for c in grading.CRITERIA)


def _v2_items():
    from pathlib import Path

    return grading.calibration_items(str(Path(__file__).resolve().parents[2] / V2))


def test_v2_calibration_set_is_split_once_and_labelled():
    items = _v2_items()
    assert len(items) >= 200 and len({it["id"] for it in items}) == len(items)
    splits = [it["split"] for it in items]
    assert abs(splits.count("dev") - splits.count("held_out")) <= 1
    assert all(
        set(it["labels"]) == set(grading.CRITERIA)
        and it["why"]
        and it["question_kind"] in grading.QUESTION_KINDS
        for it in items
    )
    assert all(not it["labels"]["affirmative"] for it in items if it["question_kind"] == "open")


@pytest.mark.parametrize("criterion", list(HELD_OUT))
def test_held_out_agreement_is_as_reported(criterion):
    held = [it for it in _v2_items() if it["split"] == "held_out"]
    result = grading.agreement(held, grading.offline_predict)[criterion]
    assert result["kappa"] >= HELD_OUT[criterion] - 1e-3
