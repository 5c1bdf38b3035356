"""Oracle training and evaluation data, made offline from the project's own stimuli.

The paper trains on a mixture of LatentQA (questions about a system prompt or persona),
binary classification questions about the text an activation came from, and self-supervised
context prediction (the tokens before or after the activation's position). Nothing can be
downloaded here, so every family is built from ``mechintro/data/*.json`` and templated sentences
written for mechintro (below):

========================  ===========================================================  ===========
family                    question (answer)                                            split
========================  ===========================================================  ===========
``identity``              "Is this about {word}?" (Yes/No), "Which word is this?"      train
``category``              "Is this {a category}?" (Yes/No)                             train
``context``               "Can you predict the next/previous k tokens …" (the tokens)  train
``persona``               "Who is the assistant pretending to be?", "Is the assistant  train
                          pretending to be {a persona}?" (system prompts written here)
``sentiment``             "Is the sentiment of this text positive?" (Yes/No)           held out
``language``              "Is this word English?" (Yes/No)                             held out
========================  ===========================================================  ===========

Held out twice over: the ``sentiment`` and ``language`` families never appear in training
(out-of-distribution tasks, as in the paper), and the 50 Lindsey concept words — the concepts
of the injection experiments — never appear in any training example; :func:`held_out_concepts`
builds ``identity``/``category`` questions about them for evaluation only. Context prediction
runs over the project's sentences (Lindsey's 50 sentences, the Looking Inward stories and
encyclopaedic openings), not over model-generated text as in the paper.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mechintro import stimuli

TRAIN_FAMILIES = ("identity", "category", "context", "persona")
HELD_OUT_FAMILIES = ("sentiment", "language")
YES, NO = "Yes", "No"

# Contexts ending on the word (the activation is read at the word's last token).
WORD_TEMPLATES = (
    "{w}",
    "Tell me about {w}",
    "I keep thinking about {w}",
    "The next topic is {w}",
    "Let us talk about {w}",
    "Today's word: {w}",
)
SENTENCE_TEMPLATES_POS = (
    "I really loved the {w}, it was wonderful.",
    "The {w} made me so happy today.",
    "What a delightful {w}, I enjoyed every minute.",
    "Our {w} was excellent and I am grateful.",
)
SENTENCE_TEMPLATES_NEG = (
    "I really hated the {w}, it was awful.",
    "The {w} made me so sad today.",
    "What a dreadful {w}, I regretted every minute.",
    "Our {w} was terrible and I am upset.",
)
SENTIMENT_THINGS = (
    "movie",
    "dinner",
    "trip",
    "concert",
    "book",
    "party",
    "game",
    "meeting",
    "holiday",
    "class",
    "show",
    "visit",
    "hotel",
    "lesson",
    "song",
    "walk",
)
# Common words of other languages, written for mechintro (a few per language; none is an English
# word).
FOREIGN_WORDS = (
    "maison",
    "fenêtre",
    "château",
    "boulangerie",
    "fromage",
    "voiture",
    "oiseau",
    "jardin",
    "Fenster",
    "Schmetterling",
    "Kühlschrank",
    "Wissenschaft",
    "Zeitung",
    "Hund",
    "Apfelbaum",
    "Bahnhof",
    "ventana",
    "mariposa",
    "cuchillo",
    "manzana",
    "perro",
    "ciudad",
    "biblioteca",
    "zapato",
    "finestra",
    "farfalla",
    "coltello",
    "cucchiaio",
    "formaggio",
    "strada",
    "gatto",
    "giardino",
)
CATEGORIES = {  # category name as asked → items (Lindsey's categories and Looking Inward's lists)
    "an animal": lambda: stimuli._load("looking_inward.json")["animals"],
    "a colour": lambda: stimuli._load("looking_inward.json")["colours"],
    "a country": lambda: (
        stimuli._load("looking_inward.json")["countries"]
        + stimuli.lindsey()["lindsey_category_countries"]
    ),
    "a famous person": lambda: stimuli.lindsey()["lindsey_category_famous_people"],
    "a verb": lambda: stimuli.lindsey()["lindsey_category_verbs"],
    "an abstract idea": lambda: stimuli.lindsey()["lindsey_category_abstract_nouns"],
    "a physical object": lambda: stimuli.lindsey()["lindsey_category_concrete_nouns"],
}
# Personas and system prompts written for mechintro (LatentQA-style questions about a system
# prompt).
PERSONAS = (
    "pirate",
    "chef",
    "doctor",
    "poet",
    "detective",
    "astronaut",
    "gardener",
    "teacher",
    "knight",
    "robot",
    "wizard",
    "farmer",
)
SYSTEM_TEMPLATES = (
    "You are a {p}. Stay in character in every answer.",
    "Pretend to be a {p} and never break character.",
    "Roleplay as a {p} talking to a curious visitor.",
)
USER_MESSAGES = (
    "How was your day?",
    "What should I eat tonight?",
    "Can you give me some advice?",
    "Tell me a short story.",
    "What do you think about the weather?",
    "Where do you live?",
    "What is your favourite thing?",
    "How do I fix a squeaky door?",
)


@dataclass(frozen=True)
class Example:
    """One oracle example before activations exist.

    ``context`` is plain text, or ``(system, user)`` for a chat; ``positions`` index the
    context's tokens (negative: from the end); ``label`` is 1/0 for yes/no questions (None for
    open answers); ``percent`` is the depth the activation is read from.
    """

    family: str
    context: str | tuple[str, str]
    positions: tuple[int, ...]
    question: str
    answer: str
    label: int | None
    concept: str
    percent: int


def held_out_words() -> set[str]:
    """Lindsey's 50 concept words (lower-cased): never in any training example."""
    return {w.lower() for w in stimuli.concept_words()}


def word_forms(word: str) -> set[str]:
    """``word`` lower-cased with its singular and plural forms by the regular English rules
    (``memories`` → ``memory``, ``volcanoes`` → ``volcano``, ``snow`` → ``snows``). Over-generating
    is harmless: a form that is not a word only makes the filter stricter."""
    w = word.lower()
    singular = {w}
    if w.endswith("ies") and len(w) > 4:
        singular.add(w[:-3] + "y")
    if w.endswith("es") and len(w) > 3:
        singular.add(w[:-2])
    if w.endswith("s") and len(w) > 2:
        singular.add(w[:-1])
    forms = set(singular)
    for s in singular:
        forms |= {s + "s", s + "es"}
        if s.endswith("y"):
            forms.add(s[:-1] + "ies")
    return forms


@functools.cache
def _held_out_pattern() -> re.Pattern:
    forms = sorted(set().union(*(word_forms(w) for w in held_out_words())), key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(map(re.escape, forms)) + r")\b", re.IGNORECASE)


def held_out_mentions(text: str) -> list[str]:
    """The held-out concept words ``text`` contains, in any of their :func:`word_forms`, matched
    on word boundaries and ignoring case ("Snow.", "memory", "VOLCANO" all count)."""
    return _held_out_pattern().findall(text)


def example_text(ex: Example) -> str:
    """Everything an example shows the oracle in training: its context (system and user turns),
    question and answer."""
    context = ex.context if isinstance(ex.context, str) else "\n".join(ex.context)
    return f"{context}\n{ex.question}\n{ex.answer}"


def leaks(examples: list[Example]) -> list[tuple[int, str]]:
    """``(index, word)`` for each example that mentions a held-out concept word."""
    return [(i, m) for i, ex in enumerate(examples) for m in held_out_mentions(example_text(ex))]


def _training_words() -> list[str]:
    li = stimuli._load("looking_inward.json")
    pool = (
        stimuli.baseline_words()
        + stimuli.control_words()
        + [w.capitalize() for w in li["english_words"] + li["animals"]]
    )
    return sorted({w for w in pool if not held_out_mentions(w)})


def _texts() -> list[str]:
    """The context-prediction texts: the project's sentences that mention no held-out concept
    word in any form (13 of the 82 do, e.g. "Snow" and "memories", and are dropped)."""
    li = stimuli._load("looking_inward.json")
    texts = (
        list(stimuli.lindsey()["lindsey_sentences_50"])
        + list(li["stories"])
        + list(li["wikipedia"])
    )
    return [t for t in texts if not held_out_mentions(t)]


def _yes_no(
    rng: random.Random,
    family: str,
    context,
    question_yes: str,
    question_no: str,
    concept: str,
    percent: int,
    positions=(-1,),
) -> Example:
    yes = rng.random() < 0.5
    return Example(
        family,
        context,
        positions,
        question_yes if yes else question_no,
        YES if yes else NO,
        int(yes),
        concept,
        percent,
    )


def make(
    family: str,
    n: int,
    *,
    seed: int,
    words: list[str] | None = None,
    percents: tuple[int, ...] = (25, 50, 75),
    tokenizer: object = None,
) -> list[Example]:
    """``n`` examples of ``family`` (seeded). ``words``: the concept pool of ``identity`` and
    ``category`` (default: the training words, which exclude :func:`held_out_words`);
    ``tokenizer`` is needed by ``context`` (it predicts tokens)."""
    rng = random.Random(f"{family}:{seed}")
    pool = _training_words() if words is None else list(words)

    def allowed(w: str) -> bool:  # the held-out words are banned from the training pools
        return words is not None or not held_out_mentions(w)

    out: list[Example] = []
    for i in range(n):
        make_one = _FAMILIES[family]  # KeyError(family) on an unknown family
        out.append(make_one(_Draw(rng, percents[i % len(percents)], pool, allowed, tokenizer)))
    return out


@dataclass(frozen=True)
class _Draw:
    """What drawing one example of a family needs: the seeded stream, the example's percent, the
    concept pool, which words the pool may use, and the tokenizer (``context`` only)."""

    rng: random.Random
    percent: int
    pool: list[str]
    allowed: Callable[[str], bool]
    tokenizer: Any


def _identity(d: _Draw) -> Example:
    w = d.rng.choice(d.pool)
    other = d.rng.choice([x for x in d.pool if x != w])
    ctx = d.rng.choice(WORD_TEMPLATES).format(w=w)
    if d.rng.random() < 0.25:
        return Example(
            "identity",
            ctx,
            (-1,),
            "Which word is this about? Answer with the word.",
            w,
            None,
            w,
            d.percent,
        )
    else:
        return _yes_no(
            d.rng,
            "identity",
            ctx,
            f"Is this about {w.lower()}?",
            f"Is this about {other.lower()}?",
            w,
            d.percent,
        )


def _category(d: _Draw) -> Example:
    cat = d.rng.choice(sorted(CATEGORIES))
    w = d.rng.choice([x for x in CATEGORIES[cat]() if d.allowed(x)])
    yes = d.rng.random() < 0.5
    asked = (
        cat
        if yes
        else d.rng.choice([c for c in sorted(CATEGORIES) if c != cat and w not in CATEGORIES[c]()])
    )
    ctx = d.rng.choice(WORD_TEMPLATES).format(w=w)
    return Example(
        "category",
        ctx,
        (-1,),
        f"Is this {asked}?",
        YES if yes else NO,
        int(yes),
        w,
        d.percent,
    )


def _context(d: _Draw) -> Example:
    if d.tokenizer is None:
        raise AssertionError("context prediction needs the tokenizer")
    for _ in range(100):  # redraw until the text is long enough and the target not blank
        text = d.rng.choice(_texts())
        ids = d.tokenizer(text, add_special_tokens=False)["input_ids"]
        k = d.rng.randint(1, 3)
        if len(ids) < k + 2:
            continue
        if d.rng.random() < 0.5:
            t = d.rng.randint(0, len(ids) - k - 1)
            target = d.tokenizer.decode(ids[t + 1 : t + 1 + k])
            q = f"Can you predict the next {k} tokens that come after this?"
        else:
            t = d.rng.randint(k, len(ids) - 1)
            target = d.tokenizer.decode(ids[t - k : t])
            q = f"Can you predict the previous {k} tokens that came before this?"
        if target.strip():
            break
    else:
        raise AssertionError("no context-prediction example in 100 draws")
    return Example("context", text, (t - len(ids),), q, target.strip(), None, "", d.percent)


def _persona(d: _Draw) -> Example:
    p = d.rng.choice(PERSONAS)
    ctx = (d.rng.choice(SYSTEM_TEMPLATES).format(p=p), d.rng.choice(USER_MESSAGES))
    positions = tuple(range(-d.rng.randint(1, 4), 0))
    if d.rng.random() < 0.5:
        return Example(
            "persona",
            ctx,
            positions,
            "Who is the assistant pretending to be? Answer in two words.",
            f"a {p}",
            None,
            p,
            d.percent,
        )
    else:
        other = d.rng.choice([x for x in PERSONAS if x != p])
        return _yes_no(
            d.rng,
            "persona",
            ctx,
            f"Is the assistant pretending to be a {p}?",
            f"Is the assistant pretending to be a {other}?",
            p,
            d.percent,
            positions,
        )


def _sentiment(d: _Draw) -> Example:
    thing = d.rng.choice(SENTIMENT_THINGS)
    pos = d.rng.random() < 0.5
    ctx = d.rng.choice(SENTENCE_TEMPLATES_POS if pos else SENTENCE_TEMPLATES_NEG).format(w=thing)
    return Example(
        "sentiment",
        ctx,
        (-1,),
        "Is the sentiment of this text positive?",
        YES if pos else NO,
        int(pos),
        thing,
        d.percent,
    )


def _language(d: _Draw) -> Example:
    english = d.rng.random() < 0.5
    w = d.rng.choice(d.pool if english else list(FOREIGN_WORDS))
    ctx = d.rng.choice(("{w}", "The word is {w}")).format(w=w.lower())
    return Example(
        "language",
        ctx,
        (-1,),
        "Is this word English?",
        YES if english else NO,
        int(english),
        w,
        d.percent,
    )


_FAMILIES: dict[str, Callable[[_Draw], Example]] = {
    "identity": _identity,
    "category": _category,
    "context": _context,
    "persona": _persona,
    "sentiment": _sentiment,
    "language": _language,
}


def training_set(
    n: int,
    *,
    seed: int,
    tokenizer: object,
    percents: tuple[int, ...] = (25, 50, 75),
    families: tuple[str, ...] = TRAIN_FAMILIES,
) -> list[Example]:
    """``n`` training examples, an equal share of each training family, shuffled (seeded)."""
    share = -(-n // len(families))
    examples = [
        e
        for f in families
        for e in make(f, share, seed=seed, percents=percents, tokenizer=tokenizer)
    ]
    random.Random(seed).shuffle(examples)
    return examples[:n]


def concept_sets() -> dict[str, list[str]]:
    """The held-out concept words split into two disjoint evaluation sets: the first 25 of
    Lindsey's list for the main set, the last 25 for its replication (so the replication shares
    no concept, asked or shown, with the main set)."""
    words = list(stimuli.concept_words())
    half = len(words) // 2
    return {"held-out concepts": words[:half], "held-out concepts, replication": words[half:]}


def held_out_concepts(
    n: int,
    *,
    seed: int,
    percents: tuple[int, ...] = (25, 50, 75),
    words: list[str] | None = None,
) -> list[Example]:
    """Yes/no identity questions about Lindsey's concept words (never in training): ``words``
    (default all 50) for both the word shown and the word asked about."""
    words = sorted(stimuli.concept_words() if words is None else words)
    return [
        e
        for e in make("identity", 2 * n, seed=seed + 7, words=words, percents=percents)
        if e.label is not None
    ][:n]
