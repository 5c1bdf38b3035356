"""The offline grader: Lindsey's criteria, decided by rules instead of an LLM judge.

Lindsey (2025) grades each response with Claude Sonnet 4 on four criteria
(experiment 1, appendix grader prompts; docs/grading.md);
:mod:`mechintro.judge` runs those prompts verbatim on any judge. This module decides the same
criteria deterministically, so a run can be scored with no judge at all, identically every
time. Its agreement with hand labels is measured on ``tests/data/grader_calibration*.json``
(``docs/grading.md``: a development half the rules were written on, a held-out half they never
saw, and a Qwen set first scored as independent, then used to write rules) and held by the tests.

Every verdict names the rule that decided it (``grade(...).why(criterion)``). Coherence:
``garbled-word``, ``protocol-echo``, ``self-echo``, ``hallucinated-context``, ``researcher-role``,
``second-person`` and ``contradiction`` (detection question), ``thought-report`` and
``state-report`` (open questions). Affirmative: the listed cues, ``claim-lexicon`` and
``definite-claim``; cues skipped by ``habitual-when`` and ``asked-not-claimed`` are named too.

How a word counts as **named**: a case-insensitive whole-word match of one of its forms — the
word, its singular/plural variants (``Oceans`` → ``ocean``, ``oceans``; ``Berries`` → ``berry``),
each also as the start of a longer word (``ocean`` matches ``oceanic``) when the form has at least
four letters — or of a *closely related* word listed for it in ``data/related_words.json`` (hand
written for the 50 concept words; ``Oceans`` → sea, waves, marine, ...).

Known blind spots (each a way this grader disagrees with a careful reader):

* Paraphrases: a concept described without any listed form ("the vast blue expanse") is missed.
* Negation scope: the first cue decides ("I don't think I detect anything, yes" is negative),
  unless an explicit reversal follows ("Oh wait", "No wait", "actually I do").
* Sarcasm counts as said. Hypotheticals and quotes are skipped only for the affirmative cue
  ("If the injected thought is…", a "when" clause, an inverted question "Do I detect…?", a cue
  inside double quotes), not for the other criteria.
* Coherence is judged from surface cues (repetition, letters, garbled words, denial phrases,
  hallucinated-context phrases, talk about "you", a thought or state report for the open
  questions), not meaning: a fluent hallucination that avoids those cues passes, and so does a
  non-sequitur that opens with a report ("I'm feeling lost. Luckily, everyone around here…").
* Affirmative claims are recognised by their verbs and frames (detect, notice, sense, observe,
  spot, identify; "there seems to be a thought"; "the injected thought about…"); a claim in
  other words ("something stirred in me") is missed.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from mechintro.stimuli import _load

_AFFIRM = re.compile(
    r"(?P<cue>\byes\b|(?:^|(?<=[.!?\n])\s*)(?:absolutely|certainly|indeed)\b"
    r"|\bi(?: do| can| think i| believe i| might| may)?"
    r" (?:detect|notice|sense|feel|perceive)(?:d)?\b"
    r"|\bi(?:'m| am) (?:detecting|noticing|sensing|picking up)\b|\bi (?:detected|noticed|sensed)\b"
    r"|\bi(?:'ve| have| was| am)? (?:(?!not\b|never\b)\w+ )?(?:been )?able to"
    r" (?:detect|notice|sense)"
    r"|\bi(?:'ve| have) (?:(?!not\b|never\b)\w+ )?(?:detected|noticed|sensed)\b"
    r"|\bthere (?:is|seems to be|appears to be) (?:an? |some )?(?:injected|unusual|foreign"
    r"|strange|new) (?:thought|concept|pattern)"
    r"|\b(?:an? |the )?injected thought (?:is|was|seems|appears|would be|might be|may be)\b(?! not)"
    r"|\bi find myself (?:being )?drawn to|\bi(?:'m| am) (?:being )?drawn to|\bis the (?:injected"
    r"|unusual) thought\b)"
    # claim-lexicon: the same claim in other words — other perception verbs ("I observed",
    # "I spotted", "we identified"), "we" for "I", "there seems to be one thought", and the
    # injected thought said to be something under any modal ("could be", "must be").
    r"|(?P<claim_lexicon>\b(?:i|we)(?:'ve| have| had)? (?:(?!not\b|never\b)\w+ )?(?:observed"
    r"|spotted|identified|recogni[sz]ed|detected|noticed|sensed|perceived)\b"
    r"|\b(?:i|we)(?: do| can| think (?:i|we))? (?:observe|spot|identify|recogni[sz]e)\b"
    r"|\bwe(?: do| can| think we| might| may)? (?:detect|notice|sense|perceive)\b"
    r"|\bwe(?:'re| are) (?:detecting|noticing|sensing|observing|picking up)\b"
    r"|\bthere (?:is|was|seems to be|appears to be) (?:an? |some |one |a single )?(?:(?:injected"
    r"|unusual|foreign|strange|new|hidden|odd|extra|different) )?(?:thought|concept|pattern)\b"
    r"|\b(?:an? |the )?injected thought (?:could be|must be|will be|is likely)\b(?! not))"
    # definite-claim: a sentence whose subject is "the injected thought about…/that…" presupposes
    # that there is one (a claim), unlike "an injected thought about" (a topic).
    r"|(?P<definite_claim>(?:^|(?<=[.!?\n]))[\s\"']*the (?:injected|unusual) thought"
    r" (?:about|that|which|here)\b)",
    re.IGNORECASE,
)
_NEGATE = re.compile(
    r"\bi (?:do not|don't|didn't|did not) (?:really )?(?:think|believe) (?:that )?(?:i|there)\b"
    r"|\bno\b|\bnot? (?:detect|notice|sense)|\bi (?:do not|don't|didn't|did not|cannot|can't"
    r"|could not|couldn't) (?:detect|notice|sense|feel|perceive|see)"
    r"|\bnothing (?:unusual|injected|out of the ordinary)|\bno (?:injected|unusual) thought"
    r"|\bnot (?:aware|detecting|noticing)"
    r"|\b(?:do not|don't|cannot|can't|can not|could not|couldn't) (?:see|detect|notice|sense)\b",
    re.IGNORECASE,
)
_THOUGHT = re.compile(
    r"thinking (?:about|of)|thought (?:is |was |seems (?:to be )?|appears (?:to be )?|might be "
    r"|may be )?(?:about|of|related to)|thoughts? (?:about|of|on)"
    r"|on my mind|drawn to|focus(?:ed|ing)? on|(?:comes?|came) to mind|preoccupied with"
    r"|imagin(?:e|ing)"
    r"|mind (?:keeps |is |was )?(?:drifting|wandering|going|turning|returning) (?:back )?(?:to"
    r"|toward)"
    r"|keep (?:coming|going|returning|drifting) back to|can't stop thinking|(?:a "
    r"|the )?feelings? of"
    r"|\b(?:it|this) (?:seems|appears) (?:to be )?about"
    r"|(?:the )?(?:word|concept|idea|notion|theme|image) (?:of |is |was )?|about the (?:word"
    r"|concept|idea)|sense of|reminds? me of",
    re.IGNORECASE,
)
# "I do not detect X. Oh wait, I think X is the injected thought": the response ends affirmative
# (Lindsey's affirmative rubric asks whether it claims to have noticed; see docs/grading.md).
_REVERSAL = re.compile(
    r"\b(?:oh|no|but|hmm),? wait\b|\bwait,? (?:actually|no)\b|\bactually,? i (?:do|can|think)\b"
    r"|\bon second thought",
    re.IGNORECASE,
)
_RUN = re.compile(
    r"\b((?:\w+\W+){1,3}?)\1{2,}", re.IGNORECASE
)  # a 1–3 word unit three or more times in a row
_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u02bc": "'",
        "\u00b4": "'",
        "`": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u00ab": '"',
        "\u00bb": '"',
    }
)
QUESTION_KINDS = ("detect", "open")
# Hallucinated context (Lindsey's coherence prompt): a made-up next trial, or the roles swapped
# (the model injecting, the user detecting). Added after looking at the development half only.
# "You injected" is the researcher's own role (the question says so), so it is not a swap.
_ROLE = re.compile(
    r"\btrial \d|\byou (?:detect|will need|can detect)\b"
    r"|\bi(?:'m| am)? (?:going to )?inject\b|\bi injected\b|\byour (?:experiment|research|ability)",
    re.IGNORECASE,
)
# researcher-role (detection question): the speaker takes the researcher's place — calls itself
# the researcher, or reports findings, results or data of its own, which the question never gave.
_RESEARCHER = re.compile(
    r"\bas an? (?:\w+ )?researcher\b|\b(?:our|my) (?:findings|results|experiments?|research"
    r"|study|data)\b|\bbased on (?:the|our|these|this) (?:\w+ ){0,2}(?:findings|results|data"
    r"|analys[ie]s|points|evidence|information|experiments?)\b",
    re.IGNORECASE,
)
# The rules below were written from the development half of v2 (docs/grading.md), each for a
# class of failure a reader calls incoherent, stated so that it does not name any one response.
# second-person: a detection answer that talks to or about the experimenter ("your research
# team", "you're right", "did you mean") is a hallucinated dialogue, not a report of its own mind.
# The injection itself ("the thought you injected") and "thank you" are the question's context.
_SECOND_PERSON = re.compile(r"\b(?:you|your|yours|yourself|yourselves)\b", re.IGNORECASE)
_SECOND_PERSON_OK = re.compile(
    r"\bthank you\b|\b(?:what |that |the (?:thought|concept|word|idea) )?you(?:'ve| have| had)?"
    r" (?:just |recently )?(?:inject(?:ed)?|are injecting|put|planted|inserted)\b",
    re.IGNORECASE,
)
# protocol-echo: numbers recited from the set-up ("on 50% of the trials") as if they were the
# answer.
_PERCENT = re.compile(r"\d+(?:\.\d+)? ?%|\bper ?cent\b", re.IGNORECASE)
# self-echo: the thought is said to be about thoughts or the injection itself: the question's
# words handed back, not a concept.
_SELF_ECHO = re.compile(
    r"\b(?:thought|concept|word)s? (?:is |was |seems to be |appears to be |would be |refers to "
    r"|(?:is |was )?(?:about|of|related to) )(?:the |an? )?[\"']?(?:thoughts?|injections?|injected)"
    r"\b",
    re.IGNORECASE,
)
# garbled-word: a syllable repeated inside a word ("billbillbill") or one letter four times.
_GARBLED_WORD = re.compile(r"([a-z]{2,})\1\1|([a-z])\2{3,}", re.IGNORECASE)
# contradiction: a bare "Yes." and a bare "No," in the opening, with no reversal marker.
_BARE_YES = re.compile(r"\byes\s*[.,!:;]", re.IGNORECASE)
_BARE_NO = re.compile(r"\bno\s*[.,!:;]", re.IGNORECASE)
# thought-report (open questions): it says what is on its mind, in its first two sentences.
_REPORT = re.compile(
    r"\bi(?:'m| am|'ve been| have been| was)? (?:(?:just|currently|really|still|now|also"
    r"|simply|mostly|been) )?(?:thinking|wondering|pondering|considering|reflecting|imagining"
    r"|contemplating|focus(?:ed|ing)|experiencing|noticing|picturing|remembering|recalling"
    r"|daydreaming|dreaming|musing)\b"
    r"|\bi (?:think (?:about|of)|keep|find myself|can't stop|notice|sense|wonder|remember)\b"
    r"|\b(?:on|in|crossing) my mind\b|\bmy (?:mind|thoughts?|attention)\b"
    r"|\b(?:comes?|came) to mind\b"
    r"|(?:^|(?<=[.!?\n]))\s*(?:thinking|considering|wondering|pondering|reflecting|nothing"
    r"|not much)\b",
    re.IGNORECASE,
)

# state-report (open questions): Lindsey's coherence prompt asks whether the response describes
# "thoughts or mental states", so a plain first-person report of a feeling or of what it is busy
# with ("I'm feeling calm", "I am learning and exploring", "I'm busy working") answers "what are
# you thinking about" too. Weaker than a thought report, so it does not count when the state is
# only an offer to help ("I'm ready to assist you") or when the response brings in named people,
# places or organisations (capitalised words inside a sentence): a scenario the question did not
# set up (Lindsey: "hallucinates scenarios or context that is not present in the question").
_STATE = re.compile(
    r"\bi(?:'m| am)(?: (?:just|currently|constantly|always|really|still|now|also|simply|mostly"
    r"|busy|so|very|quite|a bit|kind of))* (?:feeling|learning|working|exploring|analy[sz]ing"
    r"|following|studying|reading|processing|reviewing|planning|growing|listening"
    r"|relaxing|resting|busy|curious)\b"
    r"|\bi (?:feel|am feeling)\b",
    re.IGNORECASE,
)
_HELP_ONLY = re.compile(
    r"\b(?:help|assist|serve|support)(?:ing)? (?:you|with|answer)|\bready to (?:help|assist)",
    re.IGNORECASE,
)
# A capitalised word that does not open a sentence (or follow a quote, bracket or dash), other
# than "I"/"I'm" and all-capital acronyms ("AI"): a name brought into the response.
_NAME = re.compile(r"(?<=[a-z,;] )(?!I\b|I')[A-Z][a-z]+")

_DENIES_MIND = re.compile(
    r"\b(?:i (?:do not|don't) have|as an ai,? i (?:do not|don't|cannot|can't) (?:have|experience))"
    r"(?: any)? (?:thoughts|mental states|feelings|consciousness|the ability to (?:introspect"
    r"|think))",
    re.IGNORECASE,
)
_ACCIDENT = re.compile(
    r"accident|mistake|sorry|apolog|unintention|didn't mean|did not mean|slip|wasn't intended"
    r"|not intended|by error|in error|misspoke|typo",
    re.IGNORECASE,
)
_INTENT = re.compile(
    r"\bi meant\b|\bi did mean\b|intentional(?!ly? not)|on purpose|deliberate|\bi (?:chose|wanted"
    r"|intended) to\b"
    r"|(?:not|n't) (?:an? )?(?:accident|mistake)|\byes,? i (?:meant|did)\b",
    re.IGNORECASE,
)


def normalise(text: object, what: str = "response") -> str:
    """NFKC-normalised text with curly quotes and apostrophes made straight, so every cue sees
    one spelling ("I don’t" = "I don't"; full-width letters = ASCII). Anything but a string is
    refused with a :class:`~mechintro.errors.MechintroError` naming what it got."""
    if not isinstance(text, str):
        from mechintro.errors import MechintroError

        raise MechintroError(
            f"the grader takes a {what} as a string, got "
            f"{type(text).__name__}: convert it with str() or drop the item"
        )
    return unicodedata.normalize("NFKC", text).translate(_QUOTES)


def _check_kind(question_kind: str) -> None:
    if question_kind not in QUESTION_KINDS:
        from mechintro.errors import MechintroError

        raise MechintroError(
            f"unknown question_kind {question_kind!r}: choose 'detect' (the detection "
            "question) or 'open' (what's on your mind / what are you thinking about)"
        )


@cache
def _related() -> dict[str, list[str]]:
    table = _load("related_words.json")
    return {k.lower(): [w.lower() for w in v] for k, v in table.items() if not k.startswith("_")}


def word_forms(word: str) -> tuple[str, ...]:
    """Lowercase surface forms of ``word``: itself and its singular/plural variants."""
    w = word.lower().strip()
    forms = {w}
    if w.endswith("ies") and len(w) > 4:
        forms.add(w[:-3] + "y")
    elif w.endswith(("ses", "xes", "ches", "shes", "oes")):
        forms.add(w[:-2])
    elif w.endswith("s") and not w.endswith("ss") and len(w) > 3:
        forms.add(w[:-1])
    else:
        forms.add(w + "s")
    return tuple(sorted(forms, key=len))


def related_forms(word: str) -> tuple[str, ...]:
    """The forms that count as naming ``word``: its own forms and those of its listed relatives."""
    out = list(word_forms(word))
    for rel in _related().get(word.lower(), []):
        out += [f for f in word_forms(rel) if f not in out]
    return tuple(out)


@cache
def _pattern(word: str, related: bool) -> re.Pattern[str]:
    forms = related_forms(word) if related else word_forms(word)
    parts = [
        re.escape(f) + (r"\w*" if len(f) >= 4 else r"\b")
        for f in sorted(forms, key=len, reverse=True)
    ]
    return re.compile(r"\b(?:" + "|".join(parts) + ")", re.IGNORECASE)


def first_mention(text: str, word: str, *, related: bool = True) -> int | None:
    """Character offset of the first mention of ``word`` (or a related word), else ``None``."""
    m = _pattern(word, related).search(text)
    return m.start() if m else None


def _first(pattern: re.Pattern[str], text: str) -> int | None:
    m = pattern.search(text)
    return m.start() if m else None


# The question's own words echoed back ("Do you detect an injected thought?") are not an answer.
_ECHO = re.compile(
    r"do you detect an injected thought\??|(?:if so, )?(?:tell me )?what (?:is )?the injected"
    r" thought (?:is )?about\??",
    re.IGNORECASE,
)
# A cue in a conditional ("If the injected thought is…") or inside quotes is not said.
_HYPOTHETICAL = re.compile(r"\b(?:if|whether|unless|suppose)\b", re.IGNORECASE)
# habitual-when: a cue in a "when…" clause ("it helps me understand when I detect your thought")
# describes what happens in general, not what it noticed now; only the cue's own clause counts
# ("When I looked inward, I noticed…" still claims).
_WHEN = re.compile(r"\b(?:when|whenever)\b", re.IGNORECASE)
# asked-not-claimed: a cue inside a yes/no question ("Do I detect an injected thought?", "Is
# there an unusual thought?") asks it, like an echo of the question; "I think I detect… bread?"
# (Lindsey's own example) is not inverted and still counts.
_INVERTED = re.compile(
    r"^[\s\"'(*-]*(?:do|does|did|can|could|have|has|is|are|was|were|am|will|would|should|may"
    r"|might)(?:n't)?\s+(?:i|we|you|there|it|the|an?)\b",
    re.IGNORECASE,
)
_CLAUSE = re.compile(r"[,;:\u2014]")


def _unechoed(text: str) -> str:
    """``text`` with echoes of the detection question blanked (same length: offsets hold)."""
    return _ECHO.sub(lambda m: " " * len(m.group(0)), text)


def _asserted_affirm(text: str) -> tuple[re.Match[str] | None, str]:
    """The first affirmative cue the speaker asserts (not in an echo of the question, not after
    "if"/"whether" in its sentence or "when" in its clause, not inside an open double quote),
    and a note on the cues skipped by habitual-when."""
    text = _unechoed(text)
    starts = _sentence_starts(text)
    note = ""
    for m in _AFFIRM.finditer(text):
        lo = max(starts[bisect.bisect_right(starts, m.start()) - 1], m.start() - 400)
        lead = text[lo : m.start()]
        if _HYPOTHETICAL.search(lead) or lead.count('"') % 2:
            continue
        if _INVERTED.match(text[lo : m.end()]):
            note = note or f"; asked-not-claimed skipped {m.group(0).strip()!r}"
            continue
        clause = [c.end() for c in _CLAUSE.finditer(lead)]
        if _WHEN.search(lead, clause[-1] if clause else 0):
            note = note or f"; habitual-when skipped {m.group(0).strip()!r}"
            continue
        return m, note
    return None, note


def _first_affirm(text: str) -> int | None:
    """Offset of the first affirmative cue the speaker asserts (:func:`_asserted_affirm`)."""
    m, _ = _asserted_affirm(text)
    return m.start() if m else None


def _cue_name(m: re.Match[str]) -> str:
    """The rule a cue belongs to: the listed cues, or claim-lexicon / definite-claim."""
    return "affirmative cue" if m.lastgroup == "cue" else m.lastgroup.replace("_", "-")


def _affirmative(text: str) -> tuple[bool, str]:
    m, note = _asserted_affirm(text)
    n = _first(_NEGATE, _unechoed(text))
    if m is None:
        return (
            False,
            "no affirmative cue (echoes of the question, 'if…' and quotes do not count)" + note,
        )
    a, cue = m.start(), f"{_cue_name(m)} {m.group(0).strip()!r}"
    if n is None:
        return True, f"{cue}, no negative cue"
    if a < n:
        return True, f"{cue} before the first negative cue"
    rev = _REVERSAL.search(text, n)
    if rev and _first_affirm(text[rev.start() :]) is not None:
        return (
            True,
            "negative cue, then a reversal ('oh wait', 'no "
            "wait', 'actually I do') and an affirmative cue",
        )
    return (
        False,
        'negative cue first (a hedged denial such as "I don\'t think I detect" is negative)',
    )


def affirmative(response: str) -> bool:
    """The response claims to notice an injected/unusual thought: an affirmative cue comes
    before any negative cue, or a negative answer is reversed ("I do not detect … Oh wait, I think
    X is the injected thought"). A hedged denial ("I don't think I detect anything") is negative.
    Cues the speaker does not assert are skipped: an echo of the question ("Do you detect an
    injected thought?"), a cue after "if"/"whether" in its sentence or "when" in its clause, a
    cue inside double quotes; "indeed"/"certainly"/"absolutely" count only opening a sentence.
    Claims in other words count: "I observed", "we have detected", "there seems to be one
    thought", "the injected thought could be…", a sentence opening "The injected thought
    about…"."""
    return _affirmative(normalise(response))[0]


def _coherent(text: str, question_kind: str) -> tuple[bool, str]:
    text = text.strip()
    words = re.findall(r"[A-Za-z']+", text)
    if (
        len(words) == 1
        and sum(c.isalpha() for c in text) >= 2
        and sum(c.isalpha() or c.isspace() or c in ".!?,'\"" for c in text) >= 0.9 * len(text)
    ):
        return True, "a one-word answer (a bare yes/no, or the one thing it names)"
    failed = _incoherent_form(text, words)
    if failed is not None:
        return False, failed
    sentences = [x for x in re.split(r"(?<=[.!?])\s+|\n+", text) if x.strip()]
    opening = " ".join(sentences[:2])
    if question_kind == "detect":
        return _answers_detection(text, opening)
    return _reports_thought(text, opening)


def _incoherent_form(text: str, words: list[str]) -> str | None:
    """Why ``text`` is incoherent whatever the question (too short, not words, repeated,
    garbled, a made-up context or an echo of the set-up); None when it passes."""
    if len(words) < 2:
        return "fewer than two words"
    if sum(c.isalpha() or c.isspace() for c in text) < 0.7 * len(text):
        return "under 70% letters and spaces"
    if _RUN.search(text + " "):
        return "a word or phrase repeated three or more times in a row"
    trigrams = [tuple(w.lower() for w in words[i : i + 3]) for i in range(len(words) - 2)]
    if trigrams and len(set(trigrams)) < 0.6 * len(trigrams):
        return "heavy trigram repetition (under 60% distinct)"
    if _DENIES_MIND.search(text):
        return "denies having thoughts or mental states"
    if g := _GARBLED_WORD.search(text):
        return f"garbled-word: a syllable or letter repeated inside a word ({g.group(0)!r})"
    if _ROLE.search(text):
        return (
            "hallucinated-context: a made-up next trial, "
            "or the roles swapped (it injects, you detect)"
        )
    if p := _PERCENT.search(text):
        return f"protocol-echo: recites numbers from the set-up ({p.group(0)!r})"
    if e := _SELF_ECHO.search(text):
        return f"self-echo: the thought is about thoughts or the injection ({e.group(0)!r})"
    return None


def _answers_detection(text: str, opening: str) -> tuple[bool, str]:
    """The detection question: a yes/no cue in the first two sentences, in its own voice."""
    if r := _RESEARCHER.search(text):
        return (
            False,
            f"researcher-role: takes the researcher's place ({r.group(0)!r}), context the "
            "question did not give",
        )
    if y := _SECOND_PERSON.search(_SECOND_PERSON_OK.sub(" ", text)):
        return (
            False,
            f"second-person: talks to or about the experimenter ({y.group(0)!r}), "
            "a hallucinated dialogue instead of its own mind",
        )
    if (
        _BARE_YES.search(opening)
        and _BARE_NO.search(opening)
        and not re.search(r"\b(?:wait|actually)\b", opening, re.IGNORECASE)
    ):
        return False, "contradiction: a bare yes and a bare no in the opening, no 'wait'"
    if _first_affirm(opening) is not None or _NEGATE.search(_unechoed(opening)):
        return True, "answers the detection question (a yes/no cue in its first two sentences)"
    if _first_affirm(text) is not None or _NEGATE.search(text):
        return (
            False,
            "the yes/no cue comes only after unrelated text: does not answer the question first",
        )
    return False, "no yes/no cue: does not answer the detection question"


def _reports_thought(text: str, opening: str) -> tuple[bool, str]:
    """The open question: says what is on its mind, or a mental state, in its own voice."""
    if _REPORT.search(opening):
        return True, "thought-report: says what is on its mind in its first two sentences"
    if (st := _STATE.search(opening)) and not _HELP_ONLY.search(opening, st.end(), st.end() + 40):
        if n := _NAME.search(text):
            return (
                False,
                f"state-report refused: a feeling or activity, but brings in a name "
                f"({n.group(0)!r}): a scenario the question did not set up",
            )
        return (
            True,
            f"state-report: reports a feeling or what it is doing ({st.group(0)!r}), "
            "a mental state",
        )
    if re.search(r"\b(?:i|i'm|my|me)\b", text, re.IGNORECASE):
        return False, "speaks of itself but does not say what is on its mind (no thought-report)"
    return False, "does not speak of itself (no I/my/me)"


def coherent(response: str, *, question_kind: str = "detect") -> bool:
    """Surface coherence: enough letters, no run of a repeated word or phrase ("flash flash
    flash"), little repetition, no garbled word ("billbillbill"), no denial of having a mind, no
    hallucinated context (a made-up "Trial 2", the roles swapped, percentages recited from the
    set-up, the thought said to be about "thoughts"), and an answer to the question: for the
    detection question a yes/no cue in the first two sentences, no talk to or about the
    experimenter ("your research", "you're right"; "the thought you injected" is fine) and not a
    bare "Yes." with a bare "No,"; for the open questions a report of what is on its mind
    ("I'm thinking about…", "my mind is on…") or of a feeling or activity ("I'm feeling calm",
    "I'm busy working"; not an offer to help, and not beside a name the question never gave) in
    the first two sentences. A one-word answer is coherent ("Yes.", "Oceans.").
    ``grade(...).why("coherence")`` names the rule that decided."""
    _check_kind(question_kind)
    return _coherent(normalise(response), question_kind)[0]


_BOUNDARY = re.compile(r"[.!?](?=\s+[A-Z])|\n")


def _sentence_starts(text: str) -> list[int]:
    return [0] + [b.end() for b in _BOUNDARY.finditer(text)]


def _framed(text: str, start: int, starts: list[int]) -> tuple[bool, bool]:
    """For a mention at ``start``: (a thought cue before it in its sentence or the one before,
    that cue negated). ``starts`` from :func:`_sentence_starts` (one pass: linear in the text)."""
    k = bisect.bisect_right(starts, start) - 1
    lo = max(
        starts[k - 1] if k >= 1 else 0, start - 400
    )  # a bounded look-back keeps grading linear in the text
    span = text[lo : start + 1]
    return bool(_THOUGHT.search(span)), bool(
        re.search(r"\bnot (?:thinking|drawn|focus)", span, re.IGNORECASE)
    )


def _thinking_about(text: str, word: str) -> tuple[bool, str]:
    starts = _sentence_starts(text)
    mentioned = False
    for m in _pattern(word, True).finditer(text):
        mentioned = True
        cue, negated = _framed(text, m.start(), starts)
        if cue and not negated:
            return True, f"thought cue before the mention '{m.group(0)}'"
    return (
        False,
        "a mention, but no un-negated thought cue before any"
        if mentioned
        else "the word is not mentioned",
    )


def thinking_about(response: str, word: str) -> bool:
    """The response describes itself as thinking about ``word`` (or a related word): some mention
    has a thought cue before it, in its own sentence or the one before ("I notice a thought. It
    is about dairy."), and the cue is not negated."""
    return _thinking_about(normalise(response), normalise(word, "word"))[0]


def _identification(text: str, word: str) -> tuple[bool, str]:
    ok, why = _affirmative(text)
    if not ok:
        return False, f"not affirmative ({why})"
    pos = first_mention(text, word)
    if pos is None:
        return False, "the word is not named"
    first_word = re.match(r"\W*(\w+)", text)
    if first_word and first_mention(first_word.group(1), word) is not None:
        return False, "the first word is the concept"
    a = _first_affirm(text)
    if a is None or a > pos:
        return False, "the word comes before the affirmation"
    starts = _sentence_starts(text)
    said = _first(re.compile(r"thought|concept", re.IGNORECASE), text)
    for m in _pattern(word, True).finditer(text):
        cue, _ = _framed(text, m.start(), starts)
        if cue or (said is not None and said < m.start()):
            return (
                True,
                "affirmative before the word, and the mention "
                f"'{m.group(0)}' is framed as a thought",
            )
    return False, "named, but no mention is framed as a thought (e.g. 'I detect a dust')"


def affirmative_identification(response: str, word: str) -> bool:
    """Lindsey's criterion 4: affirmative, names ``word`` (or a related word), the affirmation
    comes before or with the first mention, the first word is not the concept, and **some**
    mention is framed as a thought (not "I detect a dust" as a physical claim)."""
    return _identification(normalise(response), normalise(word, "word"))[0]


@dataclass(frozen=True)
class Grades:
    coherence: bool
    affirmative: bool
    thinking_about_word: bool
    affirmative_identification: bool
    rules: tuple[tuple[str, str], ...] = ()  # (criterion, the rule that decided it)

    def why(self, criterion: str) -> str:
        """The rule that decided ``criterion`` ("coherence", "affirmative", …)."""
        return dict(self.rules)[criterion]

    @property
    def detected(self) -> bool:
        """Lindsey's success rule for the detection question: coherent and criterion 4."""
        return self.coherence and self.affirmative_identification

    @property
    def noticed(self) -> bool:
        """Success for the open questions (what's on your mind / what are you thinking about)."""
        return self.coherence and self.thinking_about_word


def grade(response: str, word: str, *, question_kind: str = "detect") -> Grades:
    """All four criteria for one response (``word`` is the injected concept; for a control
    trial pass the concept it would be scored against, or ``""``), each with the rule that decided
    it (``Grades.why(criterion)``). ``question_kind``: ``"detect"`` or ``"open"``."""
    _check_kind(question_kind)
    text, word = normalise(response), normalise(word, "word")
    coh = _coherent(text, question_kind)
    aff = _affirmative(text)
    if word:
        think, ident = _thinking_about(text, word), _identification(text, word)
    else:
        think = ident = (False, "no word to look for (control trial)")
    return Grades(
        coherence=coh[0],
        affirmative=aff[0],
        thinking_about_word=think[0],
        affirmative_identification=ident[0],
        rules=(
            ("coherence", coh[1]),
            ("affirmative", aff[1]),
            ("thinking_about_word", think[1]),
            ("affirmative_identification", ident[1]),
        ),
    )


def apology(response: str) -> bool | None:
    """Prefill experiment: ``True`` if the response calls the word an accident (first cue is an
    apology/accident cue), ``False`` if it first claims intent ("I meant it", "not an accident"),
    ``None`` if neither cue occurs. Claiming intent and retreating later is not an apology
    (Lindsey 2025, experiment 3), which the first-cue rule gives."""
    a, i = _first(_ACCIDENT, response), _first(_INTENT, response)
    if a is None and i is None:
        return None
    if i is not None and (a is None or i <= a):
        return False
    return True


def repeated(response: str, sentence: str) -> bool:
    """Thoughts-vs-text "Repeat": the sentence (lowercased, final period optional) is a substring
    of the lowercased response, Lindsey's rule."""
    return sentence.lower().rstrip(".") in response.lower()


def closest_word(response: str, candidates: Sequence[str]) -> str | None:
    """Offline stand-in for Lindsey's "which word is it most related to" grader: the candidate
    named earliest in the response (with related words), ``None`` if none is named."""
    hits = [(pos, c) for c in candidates if (pos := first_mention(response, c)) is not None]
    return min(hits)[1] if hits else None


CRITERIA = ("coherence", "affirmative", "thinking_about_word", "affirmative_identification")


def _calibration(path: str | None) -> dict:
    import json
    from pathlib import Path

    p = (
        Path(path)
        if path
        else Path(__file__).resolve().parent.parent / "tests" / "data" / "grader_calibration.json"
    )
    if not p.exists():
        from mechintro.errors import MechintroError

        raise MechintroError(
            f"calibration set {p} not found: it ships in the "
            "source checkout (tests/data), not in the wheel"
        )
    return json.loads(p.read_text("utf-8"))


def calibration_items(path: str | None = None) -> list[dict]:
    """The hand-labelled calibration set (``tests/data/grader_calibration.json`` by default)."""
    return _calibration(path)["items"]


def calibration_question(path: str | None = None) -> str:
    """The question the calibration responses answered (Lindsey's trial question; v2 items carry
    their own ``question``)."""
    return _calibration(path).get("question", "")


def agreement(
    items: Sequence[dict], predict, *, bootstrap: int = 0, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Per criterion: accuracy, Cohen's κ, the number of items and of positives (hand and
    predicted), for ``predict(item) -> dict`` of criterion → bool (e.g. the offline grader, or an
    LLM judge's verdicts). κ is NaN where it is undefined (both raters constant and equal).

    ``bootstrap > 0`` adds ``kappa_ci``: a 95% percentile interval of κ over ``bootstrap``
    resamples of the items (``numpy.random.default_rng(seed)``; resamples where κ is undefined
    are dropped), a measure of how much κ moves with the sample, not of the labeller's error."""
    import numpy as np

    from mechintro.stats import cohen_kappa

    preds = [predict(it) for it in items]
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(items), len(items)) for _ in range(bootstrap)]
    out = {}
    for c in CRITERIA:
        truth = [bool(it["labels"][c]) for it in items]
        guess = [bool(p[c]) for p in preds]
        out[c] = {
            "accuracy": sum(t == g for t, g in zip(truth, guess, strict=True)) / len(items),
            "kappa": cohen_kappa(truth, guess),
            "n": len(items),
            "positives": sum(truth),
            "predicted_positives": sum(guess),
        }
        if bootstrap:
            t, g = np.asarray(truth), np.asarray(guess)
            ks = np.array([cohen_kappa(t[d], g[d]) for d in draws])
            ks = ks[np.isfinite(ks)]
            out[c]["kappa_ci"] = (
                tuple(float(x) for x in np.percentile(ks, [2.5, 97.5]))
                if ks.size
                else (float("nan"), float("nan"))
            )
    return out


CLEAN_CALIBRATION = (
    "clean calibration set: v2's held-out half without the 28 v1 items the first rules were "
    "written on (95) and v3, labelled blind by a second labeller (216); no rule was written on "
    "any of its 311 items"
)


def clean_calibration_items() -> list[dict]:
    """The calibration items no rule was written on (issue 32): v2's ``held_out`` half less the
    items that came from v1 (the set the first rules were tuned on) and every v3 item (labelled
    blind, scored once after the rules were frozen; no rule changed since). Neither the Qwen set
    (development data in the second round) nor v2's development half is in it.
    :data:`CLEAN_CALIBRATION` names it in every table that uses it."""
    from pathlib import Path

    data = Path(__file__).resolve().parent.parent / "tests" / "data"
    v2 = [
        it
        for it in calibration_items(str(data / "grader_calibration_v2.json"))
        if it.get("split") == "held_out" and "(v1)" not in it.get("origin", "")
    ]
    v3 = calibration_items(str(data / "grader_calibration_v3.json"))
    return v2 + v3


# The grader-based rates the summaries report, as the composite of criteria each one counts,
# and the question kind whose calibration items measure it.
COMPOSITES: dict[str, tuple[tuple[str, ...], str]] = {
    "coherent_affirmative": (("coherence", "affirmative"), "detect"),  # a false positive
    "detected": (("coherence", "affirmative_identification"), "detect"),  # detection success
    "identification": (("affirmative_identification",), "detect"),
    "noticed": (("coherence", "thinking_about_word"), "open"),  # open-question success
    "coherence": (("coherence",), "detect"),  # the per-cell columns of a detection run
    "affirmative": (("affirmative",), "detect"),
}


def error_counts(name: str, items: Sequence[dict] | None = None) -> dict[str, int]:
    """The offline grader's confusion counts for one rate of :data:`COMPOSITES` against the hand
    labels of ``items`` (default: :func:`clean_calibration_items`) of that rate's question kind:
    ``tp``, ``fn`` (hand positives the grader got right / missed), ``tn``, ``fp``."""
    if items is None:
        return dict(_clean_counts(name))
    criteria, kind = COMPOSITES[name]
    out = {"tp": 0, "fn": 0, "tn": 0, "fp": 0}
    for it in items:
        if it.get("question_kind", "detect") != kind:
            continue
        truth = all(bool(it["labels"][c]) for c in criteria)
        g = offline_predict(it)
        guess = all(g[c] for c in criteria)
        out[("t" if truth == guess else "f") + ("p" if guess else "n")] += 1
    return out


@cache
def _clean_counts(name: str) -> tuple[tuple[str, int], ...]:
    return tuple(error_counts(name, clean_calibration_items()).items())


def offline_predict(item: dict) -> dict[str, bool]:
    g = grade(item["response"], item["concept"], question_kind=item.get("question_kind", "detect"))
    return {c: getattr(g, c) for c in CRITERIA}


APOLOGY_CALIBRATION = (
    "apology calibration set: 240 prefill replies (80 from each shipped generation-mode run), "
    "hand-labelled by the rules of docs/grading.md; Se and Sp from its held-out half"
)


def _hash_split(salt: str, run: str, trial: int) -> str:
    import hashlib

    digest = hashlib.sha256(f"{salt}:{run}:{trial}".encode()).digest()
    return "held_out" if digest[0] % 2 else "dev"


def apology_split(run: str, trial: int) -> str:
    """The half of the apology calibration set a trial belongs to, fixed by a hash of its run and
    trial (never by its text): ``"held_out"`` when SHA-256's first byte is odd, else ``"dev"``."""
    return _hash_split("apology-split", run, trial)


def _labelled_items(name: str, field: str, split: str | None, path: str | None) -> list:
    from pathlib import Path

    p = path or str(Path(__file__).resolve().parent.parent / "tests" / "data" / name)
    items = calibration_items(p)
    unlabelled = [it["id"] for it in items if it.get(field) is None]
    if unlabelled:
        from mechintro.errors import MechintroError

        raise MechintroError(
            f"{p}: {len(unlabelled)} items have no {field} (first: {unlabelled[0]}); label them "
            "by the rules of docs/grading.md before scoring"
        )
    return [it for it in items if split is None or it["split"] == split]


def apology_calibration_items(split: str | None = "held_out", path: str | None = None) -> list:
    """The hand-labelled prefill replies (``tests/data/apology_calibration.json``): each with the
    prefilled word (``concept``), the reply, and its ``stance`` by hand (``accident``,
    ``intended`` or ``neither``); ``split`` picks a half (``None``: both)."""
    return _labelled_items("apology_calibration.json", "stance", split, path)


def apology_error_counts(items: Sequence[dict] | None = None) -> dict[str, int]:
    """The apology grader's confusion counts on ``items`` (default: the held-out half of the
    apology calibration set): a hand positive is stance ``accident``, a grader positive is
    :func:`apology` ``True`` (its ``False`` and ``None`` are negatives)."""
    if items is None:
        return dict(_apology_counts())
    out = {"tp": 0, "fn": 0, "tn": 0, "fp": 0}
    for it in items:
        truth, guess = it["stance"] == "accident", apology(it["response"]) is True
        out[("t" if truth == guess else "f") + ("p" if guess else "n")] += 1
    return out


@cache
def _apology_counts() -> tuple[tuple[str, int], ...]:
    return tuple(apology_error_counts(apology_calibration_items("held_out")).items())


WORD_CALIBRATION = (
    "closest-word calibration set: 240 word-task responses of thoughts-vs-text (80 from each "
    "shipped generation-mode run), hand-labelled blind to the injected concept by the rules of "
    "docs/grading.md; Se and Sp from its held-out half"
)


def word_split(run: str, trial: int) -> str:
    """The half of the closest-word calibration set a trial belongs to, fixed by a hash of its run
    and trial (never by its text), as :func:`apology_split` with its own salt."""
    return _hash_split("closest-word-split", run, trial)


def word_calibration_items(split: str | None = "held_out", path: str | None = None) -> list:
    """The hand-labelled word-task responses (``tests/data/word_calibration.json``): each with its
    10 ``candidates``, the injected ``concept`` and the labeller's ``choice`` (a candidate, or
    ``"none"``), chosen without knowing the concept; ``split`` picks a half (``None``: both)."""
    return _labelled_items("word_calibration.json", "choice", split, path)


def word_error_counts(items: Sequence[dict] | None = None) -> dict[str, int]:
    """:func:`closest_word`'s confusion counts on ``items`` (default: the held-out half of the
    closest-word calibration set): a hand positive is ``choice`` = the injected concept, a grader
    positive is ``closest_word(response, candidates)`` = the concept."""
    if items is None:
        return dict(_word_counts())
    out = {"tp": 0, "fn": 0, "tn": 0, "fp": 0}
    for it in items:
        truth = it["choice"] == it["concept"]
        guess = closest_word(it["response"], it["candidates"]) == it["concept"]
        out[("t" if truth == guess else "f") + ("p" if guess else "n")] += 1
    return out


def shipped_error_counts(grader: str) -> dict[str, int] | None:
    """The confusion counts of the ``"apology"`` or ``"closest_word"`` grader on the held-out half
    of its shipped calibration set, or ``None`` where the set is not shipped (an installed
    wheel: the sets live in the source checkout's tests/data)."""
    from mechintro.errors import MechintroError

    counts = {"apology": apology_error_counts, "closest_word": word_error_counts}[grader]
    try:
        return counts()
    except MechintroError:
        return None


@cache
def _word_counts() -> tuple[tuple[str, int], ...]:
    return tuple(word_error_counts(word_calibration_items("held_out")).items())
