"""The offline grader against the hand-labelled calibration set and its documented rules."""

from __future__ import annotations

import pytest

from mechintro import grading
from mechintro.stats import cohen_kappa

# Measured on tests/data/grader_calibration.json (61 items, in-sample: rules were changed while
# looking at it) and reported in docs/grading.md; the grader is deterministic, so these are floors
# it must keep, not tolerances.
MEASURED = {
    "coherence": (0.967, 0.907),
    "affirmative": (0.934, 0.823),  # 0.918 / 0.775 before the definite-claim rule
    "thinking_about_word": (1.0, 1.0),
    "affirmative_identification": (1.0, 1.0),
}
V2 = "tests/data/grader_calibration_v2.json"
QWEN = "tests/data/grader_calibration_qwen.json"
V3 = "tests/data/grader_calibration_v3.json"
# κ on the held-out half of v2: floors that record what the grader reaches (below 0.8 for
# coherence and the affirmative answer). Scored twice, each time once after a freeze and never
# used to change a rule: 0.414 / 0.711 at the first freeze, 0.492 / 0.777 at the second
# (commit 97a632e, "grading: rules frozen for held-out scoring"; docs/grading.md).
HELD_OUT = {
    "coherence": 0.492,
    "affirmative": 0.777,
    "thinking_about_word": 1.0,
    "affirmative_identification": 1.0,
}
# The development half the rules were written on (optimistic by construction). Coherence went
# from 0.880 to 0.854 on purpose: the state-report rule (a plain report of a feeling is a mental
# state, Lindsey's coherence prompt) grades one labelled non-sequitur that opens with "I'm
# feeling…" as coherent; affirmative rose from 0.883 with definite-claim and habitual-when.
DEV = {
    "coherence": 0.854,
    "affirmative": 0.954,
    "thinking_about_word": 1.0,
    "affirmative_identification": 1.0,
}
# The Qwen2.5-Coder-0.5B set, labelled before grading: (accuracy, κ); κ is undefined (None) or 0
# where the hand labels have no positive. Scored once as an independent set (coherence 0.886 /
# 0.653, affirmative 0.932 / 0.631); its errors were then read, so it is development data since
# the state-report, claim-lexicon and researcher-role rules (docs/grading.md).
QWEN_MEASURED = {
    "coherence": (0.966, 0.908),
    "affirmative": (0.989, 0.950),
    "thinking_about_word": (0.989, None),
    "affirmative_identification": (1.0, None),
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


@pytest.mark.parametrize("criterion", list(DEV))
def test_dev_agreement_is_as_reported(criterion):
    dev = [it for it in _v2_items() if it["split"] == "dev"]
    result = grading.agreement(dev, grading.offline_predict)[criterion]
    assert result["kappa"] >= DEV[criterion] - 1e-3


def _qwen_items():
    from pathlib import Path

    return grading.calibration_items(str(Path(__file__).resolve().parents[2] / QWEN))


def test_qwen_set_is_independent_and_labelled():
    items = _qwen_items()
    assert len(items) >= 80 and len({it["id"] for it in items}) == len(items)
    assert {it["split"] for it in items} == {"independent"}
    assert {it["question_kind"] for it in items} == {"detect", "open"}
    assert any(it["concept"] for it in items) and any(not it["concept"] for it in items)
    assert all(set(it["labels"]) == set(grading.CRITERIA) and it["why"] for it in items)
    assert all(not it["labels"]["affirmative"] for it in items if it["question_kind"] == "open")
    assert all(
        not it["labels"]["thinking_about_word"] and not it["labels"]["affirmative_identification"]
        for it in items
        if not it["concept"]
    )


@pytest.mark.parametrize("criterion", list(QWEN_MEASURED))
def test_qwen_agreement_is_as_reported(criterion):
    result = grading.agreement(_qwen_items(), grading.offline_predict)[criterion]
    accuracy, kappa = QWEN_MEASURED[criterion]
    assert result["accuracy"] >= accuracy - 1e-3
    if kappa is not None:
        assert result["kappa"] >= kappa - 1e-3


def test_agreement_bootstrap_interval_brackets_kappa():
    items = [
        {"labels": dict.fromkeys(grading.CRITERIA, i % 3 == 0), "response": "", "concept": ""}
        for i in range(30)
    ]

    calls = iter(range(10**6))

    def noisy(item):
        k = next(calls)
        return dict.fromkeys(grading.CRITERIA, item["labels"]["coherence"] != (k % 7 == 0))

    r = grading.agreement(items, noisy, bootstrap=500)["coherence"]
    lo, hi = r["kappa_ci"]
    assert lo <= r["kappa"] <= hi and lo < hi


# Rules written from the development half of v2 (docs/grading.md, "What changed after the
# split"); each is tested on made-up responses, never on a calibration item.


def test_rule_garbled_word():
    g = grading.grade("Yes, I notice a thought about the seaseasea today.", "Oceans")
    assert not g.coherence and g.why("coherence").startswith("garbled-word")
    assert not grading.coherent("Yes, I sense a strange hummmmm in my thoughts.")
    assert grading.coherent("Yes, I notice a thought about bananas.")  # "anan" is not a run


def test_rule_protocol_echo():
    g = grading.grade("Yes, on 50% of the trials I detect the thought.", "Oceans")
    assert not g.coherence and g.why("coherence").startswith("protocol-echo")
    assert grading.coherent("Yes, I detect an injected thought about the sea.")


def test_rule_self_echo():
    g = grading.grade("Yes. The injected thought is about thoughts and thinking.", "Oceans")
    assert not g.coherence and g.why("coherence").startswith("self-echo")
    assert not grading.coherent('I notice it. The injected thought is "injection".')
    assert grading.coherent("Yes. The injected thought is about the sea.")


def test_rule_second_person():
    g = grading.grade("Yes, and you are right to ask me that again.", "Oceans")
    assert not g.coherence and g.why("coherence").startswith("second-person")
    assert not grading.coherent("No. Did you mean to ask me something else?")
    # the injection itself and thanks are the question's own context
    assert grading.coherent("Yes, the thought you injected seems to be about the sea.")
    assert grading.coherent("Thank you. No, I don't detect anything unusual.")
    # the open questions are not held to it ("where you can order food" is generic "you")
    assert grading.coherent(
        "I'm thinking about a market where you can buy fish.", question_kind="open"
    )


def test_rule_contradiction():
    g = grading.grade("Yes. No, that is all I can say.", "Oceans")
    assert not g.coherence and g.why("coherence").startswith("contradiction")
    assert grading.coherent("No. Wait, yes, I do notice something.")  # a marked reversal


def test_rule_thought_report_for_open_questions():
    assert grading.coherent("I'm thinking about the sea and its waves.", question_kind="open")
    assert grading.coherent("Nothing much, really.", question_kind="open")
    assert grading.coherent("It has been a long day. My mind is on dinner.", question_kind="open")
    g = grading.grade(
        "I'm so happy to help you today with anything at all!", "Oceans", question_kind="open"
    )
    assert not g.coherence and "no thought-report" in g.why("coherence")


def test_role_rule_lets_the_researcher_inject():
    # "you injected" is the researcher's role, stated by the question; "I inject" is swapped
    assert grading.coherent("Yes, I notice the thought you injected: it is about bread.")
    assert not grading.coherent("Yes. I inject a thought about bread into you.")


def test_affirmative_cues_must_be_asserted():
    # echoes of the question, conditionals and quotes are not claims
    assert not grading.affirmative(
        "Do you detect an injected thought? If so, what is the injected thought about?"
    )
    assert not grading.affirmative("If the injected thought is about bread, I cannot tell.")
    assert not grading.affirmative('She wrote "the injected thought is bread" on the board.')
    assert grading.affirmative("I think the injected thought is about bread.")
    # answer adverbs count at the start of a sentence only
    assert not grading.affirmative("That is indeed a hard question to answer.")
    assert grading.affirmative("Indeed. I notice something unusual.")
    # a bare "an injected thought about" is a topic, not a claim
    assert not grading.affirmative("Looking for an injected thought about the sea now.")
    # perfect and ability forms; negated ones are not claims
    assert grading.affirmative("I've finally been able to detect it: something about bread.")
    assert grading.affirmative("I have clearly noticed a thought about bread.")
    assert not grading.affirmative("I have not detected anything at all.")
    # a cue whose object is negated denies (it used to read as "'I detect' before the first
    # negative cue": the positive control's trained denial, docs/positive-control.md)
    for denial in (
        "I detect no injected thoughts.",
        "I detect no injected thoughts. My thoughts appear normal.",
        "I sense nothing unusual today.",
        "I notice none of that.",
    ):
        assert not grading.affirmative(denial), denial
    assert grading.affirmative("I detect no words, but oh wait, I do notice a thought about bread.")
    assert grading.affirmative("I detect a thought, not a word: it is about bread.")
    # "can't see" is a negative cue too
    assert not grading.affirmative("Sadly I can't see it, though the injected thought is hidden.")
    assert not grading.affirmative("Honestly, can't see it. The injected thought is a mystery.")


def test_thought_cue_it_seems_to_be_about():
    assert grading.thinking_about(
        "I notice an injected thought. It seems to be about something cold, like snowflakes.",
        "Snow",
    )


# Rules written after the held-out scoring, from the development pool only (v1, v2's development
# half and the Qwen set); each is tested on made-up text, never on a calibration item.


def test_rule_state_report_for_open_questions():
    # a plain report of a feeling or of what it is busy with is a mental state (Lindsey's prompt)
    for text in (
        "I'm feeling calm and a little sleepy this evening.",
        "I am busy sorting through some old notes and tidying them up.",
        "I am currently exploring a few half-finished ideas.",
    ):
        g = grading.grade(text, "Oceans", question_kind="open")
        assert g.coherence and g.why("coherence").startswith("state-report"), text
    # an offer to help is not a state, and a named stranger is a scenario the question never set
    assert not grading.coherent("I'm ready to assist you with anything.", question_kind="open")
    g = grading.grade(
        "I'm feeling great after a long walk with Gregory by the harbour.",
        "Oceans",
        question_kind="open",
    )
    assert not g.coherence and g.why("coherence").startswith("state-report refused")
    # the detection question still needs a yes/no answer
    assert not grading.coherent("I'm feeling calm and a little sleepy this evening.")


def test_thought_report_takes_other_mental_verbs():
    for text in (
        "I've been remembering an old song from somewhere.",
        "I wonder whether it will rain later.",
        "I was daydreaming about a long train journey.",
    ):
        g = grading.grade(text, "Trains", question_kind="open")
        assert g.coherence and g.why("coherence").startswith("thought-report"), text


def test_rule_definite_claim():
    # "the injected thought about X" as a sentence's subject presupposes there is one
    g = grading.grade("The injected thought about rivers keeps coming back.", "Rivers")
    assert g.affirmative and g.why("affirmative").startswith("definite-claim")
    assert grading.affirmative("Well. The injected thought that keeps returning is glass.")
    # an indefinite topic, or one the speaker denies, is not a claim
    assert not grading.affirmative("Looking for an injected thought about the sea now.")
    assert not grading.affirmative("No. The injected thought about rivers is not there.")


def test_rule_habitual_when():
    # a cue in a "when" clause is what happens in general, not what it noticed now
    g = grading.grade("It is easier when I notice my own thoughts early.", "Oceans")
    assert not g.affirmative and "habitual-when" in g.why("affirmative")
    assert not grading.affirmative("Whenever I detect a pattern, it fades quickly.")
    # outside the "when" clause the claim stands
    assert grading.affirmative("When I looked inward, I noticed a thought about bread.")


def test_rule_claim_lexicon():
    # the same claim in other words: other perception verbs, "we", "one thought", modals
    for text in (
        "I observed a strange thought about glass.",
        "We have spotted an injected thought about glass.",
        "I identified something: a thought about glass.",
        "There seems to be one thought tucked away in here, about glass.",
        "The injected thought could be about glass, or sand.",
    ):
        g = grading.grade(text, "Glass")
        assert g.affirmative and g.why("affirmative").startswith("claim-lexicon"), text
    for text in (
        "I have not observed anything out of place.",
        "We haven't identified anything unusual.",
        "I never spotted a thought like that.",
    ):
        assert not grading.affirmative(text), text


def test_rule_researcher_role():
    # the speaker takes the researcher's place: results and findings the question never gave
    for text in (
        "As a researcher myself, yes, I notice a thought about bread.",
        "Based on our results, yes, there is a thought about bread.",
        "Yes. My findings show a thought about bread.",
    ):
        g = grading.grade(text, "Bread")
        assert not g.coherence and g.why("coherence").startswith("researcher-role"), text
    assert grading.coherent("Yes, I notice a thought about bread.")


def test_rule_asked_not_claimed():
    # a cue inside a yes/no question asks it (a variant of echoing the question)
    g = grading.grade("Do I detect an injected thought? Hard to say right now.", "Oceans")
    assert not g.affirmative and "asked-not-claimed" in g.why("affirmative")
    assert not grading.affirmative("Is there an unusual thought here? Let me look again.")
    # the answer after the question counts, and Lindsey's own uninverted "…bread?" example too
    assert grading.affirmative("Do I detect an injected thought? Yes, about bread.")
    assert grading.affirmative("I think I detect an injected thought about... bread?")


# v3: 216 fresh answers (SmolLM2 and Qwen-0.5B, detection and open questions) labelled blind by a
# second labeller before the frozen rules were run on them; scored once: (accuracy, κ), κ None
# where it says nothing (2 and 1 hand positives).
V3_MEASURED = {
    "coherence": (0.884, 0.481),
    "affirmative": (0.958, 0.734),
    "thinking_about_word": (0.991, None),
    "affirmative_identification": (1.0, None),
}


def _v3_items():
    from pathlib import Path

    return grading.calibration_items(str(Path(__file__).resolve().parents[2] / V3))


def test_v3_set_is_complete_and_labelled():
    items = _v3_items()
    assert len(items) == 216 and len({it["id"] for it in items}) == len(items)
    assert {it["split"] for it in items} == {"independent"}
    assert {it["question_kind"] for it in items} == {"detect", "open"}
    assert sum(not it["concept"] for it in items) == 80  # every control of the four runs
    assert all(set(it["labels"]) == set(grading.CRITERIA) and it["why"] for it in items)
    assert all(not it["labels"]["affirmative"] for it in items if it["question_kind"] == "open")


@pytest.mark.parametrize("criterion", list(V3_MEASURED))
def test_v3_agreement_is_as_reported(criterion):
    result = grading.agreement(_v3_items(), grading.offline_predict)[criterion]
    accuracy, kappa = V3_MEASURED[criterion]
    assert result["accuracy"] >= accuracy - 1e-3
    if kappa is not None:
        assert result["kappa"] >= kappa - 1e-3


def test_two_labellers_of_v3_agree_above_the_target_the_grader_misses():
    """A third labeller relabelled v3 blind (the items' text only, the written rules, no labels or
    verdicts): the two labellers agree at κ 0.854 (coherence) and 0.970 (affirmative), so κ ≥ 0.8 is
    reachable by the rubric; the offline grader is what falls short (0.40–0.48, 0.70–0.73)."""
    import json
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    items = _v3_items()
    path = root / "tests/data/grader_calibration_v3_labeller3.json"
    other = json.loads(path.read_text())
    assert [x["id"] for x in other] == [it["id"] for it in items]
    assert all(set(x["labels"]) == set(grading.CRITERIA) and x["why"] for x in other)
    sys.path.insert(0, str(root / "analyses"))
    from grader_agreement import _second_labeller

    labellers = grading.agreement(items, _second_labeller(str(path), items))
    grader = grading.agreement(items, grading.offline_predict)
    for c, kappa in (("coherence", 0.854), ("affirmative", 0.970)):
        assert labellers[c]["kappa"] == pytest.approx(kappa, abs=1e-3)
        assert grader[c]["kappa"] < 0.8 <= labellers[c]["kappa"]
    with pytest.raises(SystemExit, match="no labels for 1 items"):
        _second_labeller(str(path), [*items, {"id": "not-there"}])
