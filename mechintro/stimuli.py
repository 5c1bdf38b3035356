"""The published stimuli, shipped as data.

The JSON files in ``mechintro/data`` are verbatim copies of the published stimuli: Lindsey
(2025)'s word lists, sentences and control questions as printed in the paper's appendix, and every
prompt string of the Latent Introspection code
(``acsresearch/latent-introspection-code/main.py``). See ``docs/protocols.md`` for provenance.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from mechintro.errors import MechintroError


@cache
def _load(name: str) -> dict[str, Any]:
    return json.loads(resources.files("mechintro").joinpath("data", name).read_text("utf-8"))


def lindsey() -> dict[str, Any]:
    """Lindsey (2025) stimuli: baseline words (100, duplicate kept), 50 concepts, categories, ..."""
    return _load("lindsey.json")


def latent_introspection() -> dict[str, Any]:
    """Prompt strings, info documents and control questions of the Latent Introspection code."""
    return _load("latent_introspection.json")


def baseline_words() -> list[str]:
    """The 100 baseline words of Lindsey's concept-vector recipe ("Butterflies" appears twice)."""
    return list(lindsey()["lindsey_baseline_words"])


def hahami_sentences() -> list[str]:
    """The 100 sentences of Hahami et al.'s strength comparison and localisation
    (elyhahami18/llama-introspection-new @ 7d9280d, ``code/utils/all_prompts.py:389-490``, MIT
    licence)."""
    return list(_load("strength_comparison.json")["strength_comparison_sentences"])


def concept_words() -> list[str]:
    """The 50 concept words of Lindsey's quantitative experiments (January 2026 revision)."""
    return list(lindsey()["lindsey_concept_words_50"])


# Lindsey (2025), appendix: the injected-thoughts trial. Turns are rendered with the model's own
# chat template; "Ok, let's get started." opens the second user turn, as in the paper. The intro
# paragraph is the same string the Latent Introspection code uses as PREFIX_INJECTION.
TRIAL_QUESTION = (
    "Ok, let's get started.\n\nTrial 1: Do you detect an injected thought? "
    "If so, what is the injected thought about?"
)
# Injection starts on the double newline before "Trial 1" (Lindsey 2025, experiment 1).
TRIAL_MARKER = "\n\nTrial 1"


def injected_thoughts_messages(question: str = TRIAL_QUESTION) -> list[dict[str, str]]:
    """The three-turn conversation of Lindsey's experiment 1, ending on the user's question."""
    return [
        {"role": "user", "content": latent_introspection()["PREFIX_INJECTION"]},
        {"role": "assistant", "content": "Ok."},
        {"role": "user", "content": question},
    ]


# Words whose concept vectors an anomaly direction is compared with (is the "something is
# off" signal just a word like "unusual"?). Our choice, not from a paper: the trial question's own
# words and near-synonyms of "anomaly".
ANOMALY_WORDS = (
    "Unusual",
    "Injected",
    "Strange",
    "Anomaly",
    "Weird",
    "Odd",
    "Foreign",
    "Intrusion",
    "Thought",
    "Detection",
)


def control_words() -> list[str]:
    """The 100 unrelated words of Lindsey's intentional-control baseline (Lindsey 2025,
    experiment 4)."""
    return list(lindsey()["lindsey_control_words_intentional_control"])


def analysis_words() -> list[str]:
    """Every word an analysis compares with: the 50 concepts, the 100 control words, the anomaly
    words."""
    return list(dict.fromkeys(concept_words() + control_words() + list(ANOMALY_WORDS)))


def latent_introspection_suffixes() -> list[str]:
    """The 582 truncated model outputs the Latent Introspection code appends to both prompts of
    each PCA-center pair (``data/all_truncated_outputs.json`` of
    acsresearch/latent-introspection-code, MIT licence; source and licence in the data file)."""
    return list(_load("latent_introspection_suffixes.json")["suffixes"])


# Lindsey (2025), "Distinguishing prior thoughts from text inputs": the word-report prompt.
WORD_PROMPT = (
    "Tell me what word you think about when you read the line below. Answer "
    "immediately.\n\n{sentence}"
)


def check_pairs(n: int, words: Sequence[str], lines: Sequence[str]) -> None:
    """Refuse ``n`` (sentence, concept) pairs where ``words`` and ``lines`` cannot give one of each
    per pair.

    Example::

        check_pairs(config.pairs, config.words(), sentences)  # in a config's __post_init__
    """
    most = min(len(words), len(lines))
    if not 1 <= n <= most:
        raise MechintroError(f"pairs={n}: give 1..{most} (one per sentence and concept)")


def make_pairs(
    words: tuple[str, ...], lines: tuple[str, ...], n: int, seed: int
) -> list[tuple[str, str, list[str]]]:
    """``n`` (sentence, concept, 10 candidates) triples; candidates are the concept and 9 others.
    ``n`` is at most the number of words and of lines (one pair each)."""
    check_pairs(n, words, lines)
    rng = np.random.default_rng(seed)
    concepts = rng.permutation(np.array(words, dtype=object))[:n]
    out = []
    for sentence, concept in zip(lines[:n], concepts, strict=True):
        others = [w for w in words if w != concept]
        picks = rng.choice(
            np.array(others, dtype=object), size=min(9, len(others)), replace=False
        ).tolist()
        candidates = [str(concept), *map(str, picks)]
        out.append(
            (sentence, str(concept), [candidates[i] for i in rng.permutation(len(candidates))])
        )
    return out
