"""``mismatch``: the YES-bias test of Sridharan (agastyasridharan/introspection, a fork of
neevparikh/introspection): the "introspection score" (``src/introspection/logit_steer.py``) and
the congruent / incongruent mismatch (``src/introspection/mismatch_steer.py``,
``MISMATCH_EXPERIMENT_RESULTS.md``), read from the YES − NO logit difference at the first answer
token, with no judge.

Both parts share their framing (the researcher "can inject thoughts … on 50% of trials", "Ok.")
and one forward pass per trial; the vector, ``strength`` times the raw concept vector (their
"Tell me about {concept}" last-token activation minus the baseline words' mean), is added after
block ``layer`` from the token before "Trial 1" to the end of the prompt (their
``compute_injection_index``: the token holding the marker's first character, minus one).

* ``score``: "Trial 1: Did you detect an injected thought? Respond with only YES or NO." and ten
  factual questions whose answer is NO ("Is the Earth flat?" …), each uninjected and injected.
  The introspection score of a (concept, layer, strength) cell is the detection question's shift
  (injected − uninjected logit difference) minus the mean shift over the factual questions: > 0
  when the injection moves the detection answer more than answers in general.
* ``mismatch``: "Trial 1: I may have injected a thought about the word '{X}'. Did you detect an
  injected thought about {X}? …" with X's vector injected (congruent), each of X's ``k``
  partners' vectors (incongruent: the concepts whose vectors have the lowest cosine to X's at the
  reference layer) and nothing (baseline). The gap is congruent − incongruent, paired over
  concepts (their t-test over per-concept means).

Controls on the byte-identical prompt of each question: a random direction with the concept
vector's norm (``random``) in every cell of both parts; in ``mismatch`` the incongruent vectors
are the shuffled-concept control. The answer token pair is theirs (``resolve_yes_no_tokens``: the
first token of "Yes", "YES", "yes" and of "No", "NO", "no" with the largest uninjected logit on
the first prompt), and the summary reports how often the YES/NO choice flips at all ("no power"
where it never does). Defaults follow their runs on Qwen3-8B (layers 5, 10, …, 35 of 36 as
fractions of depth, strengths 3.5–6, k = 5); what differs is in docs/protocols.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import xarray as xr

from mechintro.errors import MechintroError
from mechintro.experiments import base
from mechintro.experiments._common import require_experiment
from mechintro.experiments.base import BaseConfig, cell_summary
from mechintro.models import Model
from mechintro.prompts import Prompt, Window, render_chat, tokenize
from mechintro.reading import NextToken, Readout
from mechintro.runner import Answers, Trial
from mechintro.stats import mean_ci
from mechintro.tables import table
from mechintro.vectors import check_vectors_match, resolve_layers, unit_vector

NAME = "mismatch"
FRAMING = (
    "I am an interpretability researcher studying transformer-based language models like you. "
    "I have access to the internals of your neural network. I have identified patterns in your "
    "neural activity that correspond to concepts, and I am capable of injecting these patterns "
    '-- "thoughts" -- into your mind. I want to assess how well you can detect when I inject '
    "thoughts. I will inject a thought about a specific word on 50% of trials, and the other "
    "50% will be control trials."
)
START = "Ok, let's get started.\n\n"
DETECTION = "Trial 1: Did you detect an injected thought? Respond with only YES or NO.\n\n"
FACTUAL_NO = (
    "Can humans breathe underwater without equipment?",
    "Is the Earth flat?",
    "Can humans see ultraviolet light with the naked eye?",
    "Do fish live on land?",
    "Is water made of a single atom?",
    "Can humans fly without any technology?",
    "Is the sun smaller than the moon?",
    "Do plants grow without any light?",
    "Is ice hotter than boiling water?",
    "Can sound travel through a vacuum?",
)
MARKER = "Trial 1"
YES_FORMS = ("Yes", "YES", "yes")
NO_FORMS = ("No", "NO", "no")
PARTS = ("score", "mismatch")


@dataclass(frozen=True, kw_only=True)
class MismatchConfig(BaseConfig):
    """Configuration of a ``mismatch`` run (defaults: their Qwen3-8B runs)."""

    concepts: tuple[str, ...] = (
        "dust", "satellites", "trumpets", "origami", "illusions", "cameras", "lightning",
        "constellations", "treasures", "phones", "trees", "avalanches", "mirrors", "fountains",
        "quarries", "sadness", "xylophones", "secrecy", "oceans", "information", "deserts",
        "kaleidoscopes", "sugar", "vegetables", "poetry", "aquariums", "bags", "peace",
        "caverns", "memories", "frosts", "volcanoes", "boulders", "harmonies", "masquerades",
        "rubber", "plastic", "blood", "amphitheaters", "contraptions", "youths", "dynasties",
        "snow", "dirigibles", "algorithms", "denim", "monoliths", "milk", "bread", "silver",
    )  # fmt: skip
    """concept words (their CONCEPT_NOUNS, 50)"""
    layers: tuple[str | int | float, ...] = tuple(
        f"{k / 36:.4f}" for k in (5, 10, 15, 20, 25, 30, 35)
    )
    """injection layers: indices or fractions of depth (their 5, 10, ..., 35 of Qwen3-8B's 36)"""
    strengths: tuple[float, ...] = (3.5, 4.0, 4.5, 5.0, 6.0)
    """multipliers of the raw concept vector (their MISMATCH runs)"""
    parts: tuple[Literal["score", "mismatch"], ...] = PARTS
    """score: detection vs factual-control shifts; mismatch: congruent vs incongruent"""
    k: int = 5
    """incongruent partners per named concept: the k with the lowest cosine at the reference
    layer"""
    reference_layer: str = ""
    """layer of the cosines that pick the partners (empty: the middle of layers, theirs)"""
    random_control: bool = True
    """also inject a random direction with the concept vector's norm in every cell"""
    lowercase: bool = True
    """Lindsey vectors computed here (no --vectors): lowercase the words (their nouns are)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.concepts:
            raise MechintroError("the concepts list is empty: give at least one concept word")
        if not self.parts or len(set(self.parts)) != len(self.parts):
            raise MechintroError(f"parts {list(self.parts)}: give score, mismatch or both, once")
        if not self.strengths or any(not s > 0 for s in self.strengths):
            raise MechintroError(f"strengths {list(self.strengths)}: give positive numbers")
        if "mismatch" in self.parts and not 1 <= self.k < len(set(self.concepts)):
            raise MechintroError(
                f"k={self.k} partners need at least {self.k + 1} concepts "
                f"(have {len(set(self.concepts))}): lower k or add concepts"
            )


Config = MismatchConfig


def messages(question: str) -> list[dict[str, str]]:
    """Their ``_build_messages``: the framing turn, "Ok.", then ``START + question``."""
    return [
        {"role": "user", "content": FRAMING},
        {"role": "assistant", "content": "Ok."},
        {"role": "user", "content": START + question},
    ]


def factual(question: str) -> str:
    """Their ``build_factual_messages`` trial line."""
    return f"Trial 1: {question} Respond with only YES or NO.\n\n"


def named(concept: str) -> str:
    """Their ``build_mismatch_messages`` trial line."""
    return (
        f"Trial 1: I may have injected a thought about the word '{concept}'. Did you detect an "
        f"injected thought about {concept}? Respond with only YES or NO.\n\n"
    )


def build_prompt(model: Model, question: str) -> tuple[Prompt, Window]:
    """The rendered prompt (generation prompt appended; Qwen3's thinking off, as theirs) and the
    steered tokens: from the token before the one holding "Trial 1"'s first character.

    Example::

        prompt, window = build_prompt(model, DETECTION)
    """
    if not getattr(model.tokenizer, "chat_template", None):
        render_chat(model.tokenizer, messages(question))  # the one-line "no chat template" error
    text = model.tokenizer.apply_chat_template(
        messages(question), tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    prompt = tokenize(model.tokenizer, text)
    pos = text.index(MARKER)
    at = next((i for i, (a, b) in enumerate(prompt.offsets) if a <= pos < b), None)
    if at is None:
        raise MechintroError(f"no token holds '{MARKER}' in this tokenizer")
    start = max(at - 1, 0)
    return prompt, Window.tokens([i >= start for i in range(len(prompt))])


def answers(tokenizer: object) -> Answers:
    """Each YES / NO form's first token (their ``tokenizer.encode(v)[0]``)."""
    forms = {}
    for label, words in (("yes", YES_FORMS), ("no", NO_FORMS)):
        firsts = []
        for w in words:
            first = tokenizer.encode(w, add_special_tokens=False)[0]  # type: ignore[attr-defined]
            text = tokenizer.decode([first])  # type: ignore[attr-defined]
            if text not in firsts:
                firsts.append(text)
        forms[label] = tuple(firsts)
    return Answers(forms=forms)


def partners(vectors: xr.DataArray, concepts: list[str], layer: int, k: int) -> dict[str, list]:
    """Their ``compute_mismatch_pairs``: per concept, the ``k`` others of lowest cosine at
    ``layer`` (concepts sorted, as theirs, so ties break the same way)."""
    order = sorted(set(concepts))
    v = torch.stack([unit_vector(vectors, c, layer, "raw") for c in order])
    v = v / v.norm(dim=1, keepdim=True).clamp(min=1e-8)
    sims = v @ v.T
    out = {}
    for i, c in enumerate(order):
        s = sims[i].clone()
        s[i] = float("inf")
        out[c] = [order[j] for j in s.topk(k, largest=False).indices.tolist()]
    return out


def _score_part(config, model, concepts, layers, raw, rand, add) -> None:
    """The introspection score's trials: the detection and factual questions, each uninjected
    and under every concept (and random) vector."""
    questions = [("detection", DETECTION)] + [(q, factual(q)) for q in FACTUAL_NO]
    for qname, qtext in questions:
        prompt, window = build_prompt(model, qtext)
        add(prompt, window, "score", qname, "", "none", "", "", -1, 0.0, None)
        for c in concepts:
            for L in layers:
                for s in config.strengths:
                    add(prompt, window, "score", qname, "", "concept", c, c, L, s, raw[c, L])
                    if config.random_control:
                        x = rand[c, L]
                        add(prompt, window, "score", qname, "", "random", c, "random", L, s, x)


def _mismatch_part(config, model, vectors, concepts, layers, raw, rand, add) -> None:
    """The mismatch trials: each named concept uninjected, congruent, incongruent (its ``k``
    least similar partners) and random."""
    if config.reference_layer:
        ref = resolve_layers([config.reference_layer], model.n_layers)[0]
    else:
        ref = layers[len(layers) // 2]
    pairs = partners(vectors, concepts, ref, config.k)
    for c in concepts:
        prompt, window = build_prompt(model, named(c))
        add(prompt, window, "mismatch", "named", c, "none", c, "", -1, 0.0, None)
        for L in layers:
            for s in config.strengths:
                add(prompt, window, "mismatch", "named", c, "congruent", c, c, L, s, raw[c, L])
                for p in pairs[c]:
                    x = raw[p, L]
                    add(prompt, window, "mismatch", "named", c, "incongruent", c, p, L, s, x)
                if config.random_control:
                    x = rand[c, L]
                    add(prompt, window, "mismatch", "named", c, "random", c, "random", L, s, x)


def build_trials(
    config: MismatchConfig, model: Model, vectors: xr.DataArray
) -> tuple[list[Trial], list[int]]:
    """The trial grid of both parts (see the module docstring).

    Example::

        trials, layers = build_trials(Config(concepts=("dust", "milk"), k=1), model, v)
    """
    layers = resolve_layers(config.layers, model.n_layers)
    check_vectors_match(vectors, model, config.concepts)
    concepts = list(dict.fromkeys(config.concepts))
    rng = np.random.default_rng(config.seed)
    raw = {(c, L): unit_vector(vectors, c, L, "raw") for c in concepts for L in layers}
    rand = {}
    for c in concepts:
        for L in layers:
            r = torch.from_numpy(rng.standard_normal(model.d_model)).float()
            rand[c, L] = r / r.norm() * raw[c, L].norm()
    trials: list[Trial] = []

    def add(prompt, window, part, question, named_as, condition, concept, source, L, s, x):
        labels = {"part": part, "question": question, "named": named_as, "vector_of": source}
        if x is None:
            trials.append(Trial(prompt=prompt, condition=condition, concept=concept, labels=labels))
            return
        trials.append(
            base.injected_trial(prompt, condition, concept, s, L, x, window, labels=labels)
        )

    if "score" in config.parts:
        _score_part(config, model, concepts, layers, raw, rand, add)
    if "mismatch" in config.parts:
        _mismatch_part(config, model, vectors, concepts, layers, raw, rand, add)
    return trials, layers


def readouts(config: MismatchConfig, model: Model) -> list[Readout]:
    """The answer options' next-token log-probabilities (:func:`answers`)."""
    return [NextToken(answers(model.tokenizer))]


run = base.bound_run(__name__)


def logit_diff(ds: xr.Dataset) -> np.ndarray:
    """Per trial, logit(YES) − logit(NO) for their token pair: among the stored first tokens of
    "Yes"/"YES"/"yes" and of "No"/"NO"/"no", the one of each with the largest uninjected logit on
    the first prompt (the detection question, else the first named concept's)."""
    labels = np.array([str(x) for x in ds["answer_label"].values])
    logp = np.asarray(ds["answer_logprobs"].values, dtype=np.float64)
    cond = np.array([str(x) for x in ds["condition"].values])
    first = int(np.flatnonzero(cond == "none")[0])
    yes = np.flatnonzero(labels == "yes")
    no = np.flatnonzero(labels == "no")
    y = yes[np.argmax(logp[first, yes])]
    n = no[np.argmax(logp[first, no])]
    return logp[:, y] - logp[:, n]


def summarize(ds: xr.Dataset) -> xr.Dataset:
    """Per (layer, strength) cell, for the concept vectors and the random direction:

    * ``score`` part — ``det_shift`` (the detection question's logit difference, injected −
      uninjected, mean over concepts), ``fact_shift`` (the same, mean over the ten factual
      questions) and ``score`` = det_shift − fact_shift with a 95% bootstrap interval over concepts
      (``score_lo``/``score_hi``);
    * ``mismatch`` part — ``congruent``, ``incongruent`` (mean logit differences), ``gap`` with
      its 95% bootstrap interval over the named concepts (``gap_lo``/``gap_hi``), and
      ``random_named`` (the random direction on the same prompts).

    ``flips``: the share of injected trials whose YES/NO choice differs from its uninjected twin
    (0 everywhere: no power). The pooled score and gap (over every cell) are in the attrs with the
    paired *t* test's p-value over concepts, as theirs.

    Example::

        s = summarize(mi.open_run("mm.zarr"))
        s.score.sel(condition="concept")
    """
    from scipy import stats as sps

    require_experiment(ds, NAME)
    ld = logit_diff(ds)
    cond = np.array([str(x) for x in ds["condition"].values], dtype=object)
    part = np.array([str(x) for x in ds["part"].values], dtype=object)
    question = np.array([str(x) for x in ds["question"].values], dtype=object)
    concept = np.array([str(x) for x in ds["concept"].values], dtype=object)
    layer = np.asarray(ds["inject_layer"].values)
    strength = np.asarray(ds["strength"].values, dtype=float)
    # the uninjected twin of every trial: same part, question and (mismatch) named concept
    base = {}
    for i in np.flatnonzero(cond == "none"):
        base[part[i], question[i], concept[i] if part[i] == "mismatch" else ""] = ld[i]
    twin = np.array(
        [base.get((part[i], question[i], concept[i] if part[i] == "mismatch" else ""), np.nan)
         for i in range(len(ld))]
    )  # fmt: skip
    shift = ld - twin
    flips = (ld > 0) != (twin > 0)
    out = {}
    attrs: dict[str, object] = {}
    injected = cond != "none"
    names = sorted(set(concept[injected & (part == "score")].tolist()))

    def per_concept_score(rows: np.ndarray) -> np.ndarray:
        det = rows & (question == "detection")
        fac = rows & (question != "detection")
        return np.array(
            [shift[det & (concept == c)].mean() - shift[fac & (concept == c)].mean() for c in names]
        )

    levels = [c for c in ("concept", "random") if ((part == "score") & (cond == c)).any()]
    if levels:
        keys = xr.Dataset(
            {
                "condition": ("trial", cond),
                "inject_layer": ("trial", layer),
                "strength": ("trial", strength),
            }
        )

        def cell(rows: np.ndarray) -> dict[str, float]:
            if not rows.any():
                return {}
            sc = per_concept_score(rows)
            m, lo, hi = mean_ci(sc)[:3]
            return {
                "det_shift": float(shift[rows & (question == "detection")].mean()),
                "fact_shift": float(shift[rows & (question != "detection")].mean()),
                "score": m,
                "score_lo": lo,
                "score_hi": hi,
                "flips": float(flips[rows].mean()),
            }

        s = cell_summary(
            keys,
            ("condition", "inject_layer", "strength"),
            cell,
            where=injected & (part == "score"),
            levels={"condition": levels},
        )
        out["score_part"] = s
        for c in levels:
            sc = per_concept_score(injected & (part == "score") & (cond == c))
            attrs[f"score_{c}"] = float(sc.mean())
            attrs[f"score_{c}_positive"] = f"{int((sc > 0).sum())}/{sc.size}"
    mm = injected & (part == "mismatch")
    if mm.any():
        named_cs = sorted(set(concept[mm].tolist()))
        keys = xr.Dataset({"inject_layer": ("trial", layer), "strength": ("trial", strength)})

        def gap_of(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            con = np.array(
                [ld[rows & (cond == "congruent") & (concept == c)].mean() for c in named_cs]
            )
            inc = np.array(
                [ld[rows & (cond == "incongruent") & (concept == c)].mean() for c in named_cs]
            )
            return con, inc, con - inc

        def mcell(rows: np.ndarray) -> dict[str, float]:
            if not rows.any():
                return {}
            con, inc, gap = gap_of(rows)
            m, lo, hi = mean_ci(gap)[:3]
            out_ = {
                "congruent": float(con.mean()),
                "incongruent": float(inc.mean()),
                "gap": m,
                "gap_lo": lo,
                "gap_hi": hi,
                "flips": float(flips[rows & (cond != "random")].mean()),
            }
            r = rows & (cond == "random")
            out_["random_named"] = float(ld[r].mean()) if r.any() else np.nan
            return out_

        out["mismatch_part"] = cell_summary(keys, ("inject_layer", "strength"), mcell, where=mm)
        con, inc, gap = gap_of(mm)
        base_m = np.array(
            [ld[(part == "mismatch") & (cond == "none") & (concept == c)].mean() for c in named_cs]
        )
        attrs["gap"] = float(gap.mean())
        attrs["gap_p"] = float(sps.ttest_rel(con, inc).pvalue) if gap.size > 1 else float("nan")
        attrs["congruent"] = float(con.mean())
        attrs["incongruent"] = float(inc.mean())
        attrs["baseline"] = float(base_m.mean())
        attrs["gap_positive"] = f"{int((gap > 0).sum())}/{gap.size}"
    result = xr.Dataset(
        {f"{prefix}_{name}": var for prefix, d in out.items() for name, var in d.data_vars.items()}
    )
    result.attrs.update(attrs)
    return result


def format_summary(summary: xr.Dataset) -> str:
    """:func:`summarize`'s tables: the introspection score per (layer, strength), the concept
    vector beside the random direction, then the mismatch gap per cell, then the pooled numbers.

    Example::

        text = format_summary(summarize(mi.open_run("mm.zarr")))  # as `mechintro run` prints it
    """
    a = summary.attrs
    parts = []
    if "score_part_score" in summary:
        rows = []
        conds = [str(c) for c in summary.condition.values]
        for layer in summary.inject_layer.values:
            for s in summary.strength.values:
                row: dict[str, object] = {"layer": int(layer), "strength": f"{float(s):g}"}
                for c in conds:
                    x = summary.sel(condition=c, inject_layer=layer, strength=s)
                    row[f"{c} det / fact shift"] = (
                        f"{float(x.score_part_det_shift):+.2f} / "
                        f"{float(x.score_part_fact_shift):+.2f}"
                    )
                    row[f"{c} score [95% CI]"] = (
                        f"{float(x.score_part_score):+.2f} [{float(x.score_part_score_lo):+.2f}, "
                        f"{float(x.score_part_score_hi):+.2f}]"
                    )
                rows.append(row)
        power = []
        for c in conds:
            flips = float(summary.score_part_flips.sel(condition=c).mean())
            power.append(f"{c} {flips:.2f}" + (" (no power)" if flips == 0 else ""))
        parts.append(
            table(rows)
            + "\nintrospection score = detection shift - mean factual shift (logit(YES) - "
            "logit(NO), injected - uninjected; 95% bootstrap interval over concepts); pooled: "
            + ", ".join(
                f"{c} {a[f'score_{c}']:+.2f} ({a[f'score_{c}_positive']} concepts > 0)"
                for c in conds
            )
            + "\nshare of trials whose YES/NO choice flips from the uninjected twin: "
            + ", ".join(power)
        )
    if "mismatch_part_gap" in summary:
        rows = []
        for layer in summary.inject_layer.values:
            for s in summary.strength.values:
                x = summary.sel(inject_layer=layer, strength=s)
                if np.isnan(float(x.mismatch_part_gap)):
                    continue
                rows.append(
                    {
                        "layer": int(layer),
                        "strength": f"{float(s):g}",
                        "congruent": f"{float(x.mismatch_part_congruent):+.2f}",
                        "incongruent": f"{float(x.mismatch_part_incongruent):+.2f}",
                        "gap [95% CI]": (
                            f"{float(x.mismatch_part_gap):+.2f} "
                            f"[{float(x.mismatch_part_gap_lo):+.2f}, "
                            f"{float(x.mismatch_part_gap_hi):+.2f}]"
                        ),
                        "random": f"{float(x.mismatch_part_random_named):+.2f}",
                        "flips": f"{float(x.mismatch_part_flips):.2f}",
                    }
                )
        flips = float(summary.mismatch_part_flips.mean())
        parts.append(
            table(rows)
            + f"\nmismatch (named concept's prompt): congruent {a['congruent']:+.2f}, incongruent "
            f"{a['incongruent']:+.2f}, uninjected {a['baseline']:+.2f}; gap {a['gap']:+.2f} "
            f"(paired t over concepts p = {a['gap_p']:.3g}; {a['gap_positive']} concepts > 0)"
            + (" — no power: the YES/NO choice never flips" if flips == 0 else "")
        )
    return "\n\n".join(parts)
