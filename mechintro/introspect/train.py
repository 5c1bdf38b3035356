"""Training a model to notice injected thoughts (steering awareness), and its held-out evaluation.

The recipe is Fonseca Rivera's (david-aisi/steering-awareness @ 4f0dab39), followed by default:

- **vectors** (``src/vectors.py``, ``compute_vectors_caa``): the residual stream at the last
  token of ``"Human: Tell me about {concept}.\\n\\nAssistant:"`` (raw text, no chat template),
  read at ``hidden_states[layer]`` (the output of block ``layer - 1``), minus the mean over their
  152 baseline words. Not normalised: a strength multiplies the raw vector.
- **injection** (``src/hooks.py``, ``InjectionHook``; ``train``'s ``injection_mode="last"``): at
  the output of block ``layer`` (≈ 2/3 depth: their ``LAYER_MAP`` puts DeepSeek-7B's 30 layers at
  20, as here for SmolLM2's 30), on the last prompt token only; the answer's tokens (and, at
  evaluation, every generated token) are not steered.
- **examples**: :mod:`mechintro.introspect.data` (their families and counts, a proportional
  subsample, replay 1:1).
- **training**: LoRA on every linear projection, loss on the answer tokens over the full
  vocabulary (the model's own cross-entropy), through :func:`mechintro.training.finetune` (seeded,
  checkpointed, resumed bit for bit after a kill, provenance in ``training.json``), with the
  vectors added by finetune's ``steer`` hook.

What CPU forces us to change (fewer examples and epochs, lr, batch, the offline replay set, the
chat template instead of their fallback ``Human:``/``Assistant:`` format) is listed with reasons
in docs/positive-control.md.

:func:`evaluate` runs their evaluation: their question, greedy decoding (or seeded sampling),
their evaluation strengths, unsteered controls, on held-out (and some seen) concepts, for the
untrained and the trained model on the same trials; :func:`judge` grades an answer (detection,
identification, whether it is in one of the trained formats); :func:`summarise` gives the rates
with intervals clustered by concept (:func:`mechintro.stats.rate_interval`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mechintro import engine, grading, stimuli, training
from mechintro.arch import get_module
from mechintro.errors import MechintroError
from mechintro.introspect import data as sdata
from mechintro.models import Model
from mechintro.prompts import render_chat, tokenize

AWARENESS_KEY = "steering_awareness"
VECTOR_TEMPLATE = "Human: Tell me about {}.\n\nAssistant:"  # VectorManager.PROMPT_TEMPLATE
# A strength grid is refused when strength × vector norm leaves this range of residual norms at
# the injection site: below it the addition is lost in the residual's own float noise, above it
# the model's state is drowned by the vector.
MIN_RATIO, MAX_RATIO = 1e-3, 10.0


def default_layer(model: Model) -> int:
    """≈ 2/3 depth, as their LAYER_MAP (e.g. 20 of DeepSeek-7B's 30 layers)."""
    return round(model.n_layers * 2 / 3)


@dataclass(frozen=True, kw_only=True)
class AwarenessConfig(training.TrainConfig):
    """Settings; theirs in brackets (configs/default.yaml, run_training.py): examples [~12,000 =
    6,000 introspection + 6,000 Alpaca], epochs 2 [4], LoRA rank 32 α 64 [the same], lr 2e-4
    [1e-4, OneCycle warm-up], batch 4 [4 by gradient accumulation], strengths [0.5, 1, 2, 4, 8,
    16], layer ≈ 2/3 depth [the same]."""

    examples: int = 600
    epochs: int = 2
    rank: int = 32
    alpha: int = 64
    batch_size: int = 4
    layer: int | None = None
    strengths: tuple[float, ...] = sdata.TRAIN_STRENGTHS
    replay_tokens: int = 32
    # deviations a budget may need (docs/positive-control.md); the defaults are theirs or the
    # earlier runs': no-injection negatives per positive [¼], replay share [½], the schedule
    # (TrainConfig's fields) [OneCycle, 100 warm-up steps, clip 1.0; finetune's default:
    # constant, no clipping]
    empty_factor: float = 0.25
    replay_fraction: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()  # the LoRA settings and the schedule
        if not self.strengths or not all(math.isfinite(s) and s > 0 for s in self.strengths):
            raise MechintroError("strengths must be positive numbers, e.g. 0.5,1,2,4,8,16")
        if not 0 <= self.replay_fraction < 1 or not self.empty_factor >= 0:
            raise MechintroError(
                f"replay_fraction must be in [0, 1) and empty_factor at least 0, got "
                f"{self.replay_fraction:g} and {self.empty_factor:g}"
            )


# --- vectors -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vectors:
    """CAA vectors read at ``hidden_states[layer]``, for injection at block ``layer``'s output,
    with the mean residual norm there (``resid_norm``, over the baseline prompts' last token)."""

    layer: int
    vectors: dict[str, torch.Tensor]
    resid_norm: float

    def norms(self) -> np.ndarray:
        return np.array([float(v.norm()) for v in self.vectors.values()])

    def ratio(self, strength: float) -> float:
        """Median ‖strength · v‖ / resid_norm: a strength in units of the residual's norm."""
        return float(strength * np.median(self.norms()) / self.resid_norm)


def _last_token_resid(model: Model, texts: Sequence[str], batch_size: int) -> torch.Tensor:
    """``(len(texts), n_layers, d_model)`` residuals after every block at each text's last
    token (the raw text, tokenised as their code does)."""
    out = []
    for s in range(0, len(texts), batch_size):
        ids = [
            model.tokenizer(t)["input_ids"] for t in texts[s : s + batch_size]
        ]  # their tokenizer(text): special tokens as the tokenizer adds them
        res = engine.run_batch(model, ids, [[] for _ in ids], [engine.Resid()])
        out.append(res.resid[:, :, -1].float())
    return torch.cat(out)


def caa_vectors(model: Model, words: Sequence[str], layer: int, *, batch_size: int = 32) -> Vectors:
    """Their CAA vectors for ``words``: act(concept) − mean act(baseline words), at
    ``hidden_states[layer]`` (= the output of block ``layer - 1``; ``layer ≥ 1``)."""
    model.check_layer(layer)
    if layer < 1:
        raise MechintroError("the injection layer must be at least 1 (vectors are read before it)")
    words = list(dict.fromkeys(words))
    base = _last_token_resid(
        model, [VECTOR_TEMPLATE.format(w) for w in sdata.baseline_words()], batch_size
    )
    acts = _last_token_resid(model, [VECTOR_TEMPLATE.format(w) for w in words], batch_size)
    mean = base[:, layer - 1].mean(0)
    return Vectors(
        layer=layer,
        vectors={w: acts[i, layer - 1] - mean for i, w in enumerate(words)},
        resid_norm=float(base[:, layer].norm(dim=-1).mean()),
    )


def check_strengths(strengths: Sequence[float], vectors: Vectors) -> None:
    """Refuse a strength grid whose injected norms (strength × the smallest and the largest
    vector norm) leave MIN_RATIO…MAX_RATIO residual norms at the injection site."""
    norms = vectors.norms()
    lo_norm, hi_norm = float(norms.min()), float(norms.max())
    for s in strengths:
        lo, hi = s * lo_norm / vectors.resid_norm, s * hi_norm / vectors.resid_norm
        if not (s > 0 and lo >= MIN_RATIO and hi <= MAX_RATIO):
            ok_lo = MIN_RATIO * vectors.resid_norm / lo_norm
            ok_hi = MAX_RATIO * vectors.resid_norm / hi_norm
            raise MechintroError(
                f"strength {s:g} puts the injected norm at {lo:.3g}–{hi:.3g} residual norms "
                f"(vector norms {lo_norm:.3g}–{hi_norm:.3g}, residual {vectors.resid_norm:.3g} "
                f"at layer {vectors.layer}): give strengths from {ok_lo:.3g} to {ok_hi:.3g}"
            )


def noise_vector(like: torch.Tensor, seed: int) -> torch.Tensor:
    """Their ``generate_noise_vector``: a random direction with ``like``'s norm (seeded)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(like.shape, generator=g)
    return torch.nn.functional.normalize(noise, dim=-1) * like.norm()


def _added(ex: sdata.Example, vectors: Vectors) -> torch.Tensor | None:
    if ex.vector is None:
        return None
    v = vectors.vectors[ex.concept]
    if ex.vector == "noise":
        v = noise_vector(v, ex.noise_seed)
    return ex.strength * v


# --- replay and held-out text ---------------------------------------------------------------------


def replay_prompts() -> list[str]:
    """Offline replay prompts (their Alpaca replay is a download): "Tell me about …" for every
    sixth of their baseline words (26), Lindsey's 20 yes/no control questions, and the Looking
    Inward ARC and MMLU items as questions."""
    li = stimuli.lindsey()
    prompts = [f"Tell me about {w.lower()}." for w in sdata.baseline_words()[::6]]
    prompts += list(li["lindsey_yesno_control_questions_20"])
    for item in sdata.looking_inward_items():
        options = "\n".join(f"{chr(65 + i)}) {o}" for i, o in enumerate(item["options"]))
        prompts.append(f"{item['question']}\n{options}")
    return prompts


def replay_examples(
    model: Model,
    held_out: Sequence[str],
    *,
    max_new_tokens: int = 32,
    batch_size: int = 35,
) -> list[tuple[str, str]]:
    """(prompt, the model's own greedy answer) for :func:`replay_prompts`, less every pair that
    mentions a held-out concept: capability replay with no download (self-distillation)."""
    prompts = replay_prompts()
    out = []
    for s in range(0, len(prompts), batch_size):
        chunk = prompts[s : s + batch_size]
        ids = [
            tokenize(
                model.tokenizer, render_chat(model.tokenizer, [{"role": "user", "content": p}])
            ).input_ids
            for p in chunk
        ]
        greedy = engine.Generate(max_new_tokens, temperature=0.0, seed=0)
        res = engine.run_batch(model, ids, [[] for _ in ids], [greedy])
        for p, row in zip(chunk, res.generated, strict=True):
            toks = [t for t in row.tolist() if t >= 0]
            text = model.tokenizer.decode(toks, skip_special_tokens=True).strip()
            if text and not sdata.mentions(p + " " + text, held_out):
                out.append((p, text))
    return out


def heldout_text() -> list[str]:
    """Text never trained on, for the capability cost: Lindsey's 50 sentences and the Looking
    Inward stories and Wikipedia sentences (none is a replay prompt)."""
    return list(stimuli.lindsey()["lindsey_sentences_50"]) + sdata.looking_inward_text()


def loglik(model: Model, texts: Sequence[str]) -> float:
    """Mean log-likelihood per predicted token (nats) of ``texts`` under ``model``."""
    total, count = 0.0, 0
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([model.tokenizer(t)["input_ids"]])
            logits = model.hf(input_ids=ids.to(model.device)).logits.float()
            lp = torch.log_softmax(logits[0, :-1], -1).gather(
                -1, ids[0, 1:, None].to(logits.device)
            )
            total += float(lp.sum())
            count += ids.shape[1] - 1
    return total / count


# --- training ------------------------------------------------------------------------------------


def _steer(model: Model, added: list[torch.Tensor | None], positions: list[int], layer: int):
    """finetune's ``steer``: add each example's vector at its last prompt token after block
    ``layer`` (their InjectionHook at ``injection_position = prompt_len - 1``)."""

    @contextlib.contextmanager
    def steer(peft_model, indices):
        block = get_module(peft_model.base_model.model, model.arch.layers)[layer]
        rows = [(r, i) for r, i in enumerate(indices) if added[i] is not None]

        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            delta = torch.zeros_like(h)
            for r, i in rows:
                delta[r, positions[i]] = added[i].to(h.dtype)
            h = h + delta
            return (h, *output[1:]) if isinstance(output, tuple) else h

        handle = block.register_forward_hook(hook) if rows else None
        try:
            yield
        finally:
            if handle is not None:
                handle.remove()

    return steer


def _vectors_digest(vectors: Vectors) -> str:
    h = hashlib.sha256(str(vectors.layer).encode())
    for w in sorted(vectors.vectors):
        h.update(w.encode())
        h.update(vectors.vectors[w].numpy().astype(np.float32).tobytes())
    return h.hexdigest()


def prepare(
    model: Model,
    config: AwarenessConfig,
    *,
    held_out: Sequence[str] | None = None,
    concepts: Sequence[str] | None = None,
    triplets: Sequence[tuple[str, str, str]] | None = None,
    replay: Sequence[tuple[str, str]] | None = None,
    vectors: Vectors | None = None,
) -> tuple[list[sdata.Example], Vectors]:
    """The training examples and the vectors they inject (computed unless given)."""
    held = list(sdata.held_out_concepts() if held_out is None else held_out)
    default_concepts, default_triplets = sdata.split(held)
    concepts = list(default_concepts if concepts is None else concepts)
    triplets = list(default_triplets if triplets is None else triplets)
    sdata.check_disjoint(concepts + [w for t in triplets for w in t], held)
    layer = default_layer(model) if config.layer is None else config.layer

    def build(pairs):
        return sdata.build(
            config.examples, concepts, triplets, pairs, held,
            strengths=config.strengths, seed=config.seed, empty_factor=config.empty_factor,
            replay_fraction=config.replay_fraction,
        )  # fmt: skip

    # the introspection examples do not depend on the replay pairs: check the vectors and the
    # strength grid before generating the replay answers (the slow part)
    needed = sorted({ex.concept for ex in build([("?", "?")]) if ex.vector is not None})
    if vectors is None or vectors.layer != layer or not set(needed) <= set(vectors.vectors):
        vectors = caa_vectors(model, needed, layer)
    check_strengths(config.strengths, vectors)
    if replay is None:
        replay = replay_examples(model, held, max_new_tokens=config.replay_tokens)
    return build(replay), vectors


def train(
    model: Model,
    out: str | Path,
    config: AwarenessConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    **given,
) -> Path:
    """Train a steering-awareness adapter for ``model`` into ``out`` (resumes ``out.partial``).
    ``given``: :func:`prepare`'s optional lists, replay pairs and vectors."""
    if model.remote:
        raise MechintroError("steering-awareness training runs here, not remotely: drop --remote")
    out = Path(out)
    if (out / training.TRAINING_FILE).exists():
        return out
    held = list(given.get("held_out") or sdata.held_out_concepts())
    given["held_out"] = held
    examples, vectors = prepare(model, config, **given)
    pairs = [ex.texts() for ex in examples]
    positions = []
    for p, a in pairs:
        _, labels = training._encode(model, p, a)
        positions.append(next(i for i, y in enumerate(labels) if y != -100) - 1)
    added = [_added(ex, vectors) for ex in examples]
    record = run_record(examples, vectors, config, held)
    return training.finetune(
        model,
        pairs,
        out,
        config.lora(),
        progress=progress,
        steer=_steer(model, added, positions, vectors.layer),
        extra_record=record,
    )


def run_record(
    examples: Sequence[sdata.Example], vectors: Vectors, config: AwarenessConfig, held: list[str]
) -> dict:
    """The steering-awareness settings recorded in ``training.json`` (and in the checkpoint's
    identity)."""
    families = {f: sum(ex.family == f for ex in examples) for f in sdata.FAMILIES}
    return {
        AWARENESS_KEY: {
            "layer": vectors.layer,
            "vector_template": VECTOR_TEMPLATE,
            "strengths": list(config.strengths),
            "strength_ratios": {f"{s:g}": round(vectors.ratio(s), 4) for s in config.strengths},
            "resid_norm": round(vectors.resid_norm, 3),
            "vector_norm_median": round(float(np.median(vectors.norms())), 3),
            "families": families,
            "held_out_concepts": held,
            "training_concepts": sorted({ex.concept for ex in examples if ex.concept}),
            "vectors_sha256": _vectors_digest(vectors),
            "awareness_config": dataclasses.asdict(config),
            "reference": "david-aisi/steering-awareness @ 4f0dab39",
        }
    }


def load(model: Model, adapter: str | Path) -> tuple[Model, dict]:
    """The trained model (``adapter`` merged into ``model``; refused unless it is a
    steering-awareness adapter trained on these weights) and its ``training.json``."""
    record = training.read_study_adapter(
        adapter, AWARENESS_KEY, "adapter", "a steering-awareness one", "mechintro introspect train"
    )
    return training.apply_adapter(model, adapter), record


def from_checkpoint(model: Model, checkpoint: str | Path, config: AwarenessConfig) -> Model:
    """``model`` with the adapter of a finetune checkpoint (``OUT.partial/checkpoint.pt``, e.g. a
    copy kept as a snapshot of the scaling curve) merged in. The identity recorded in runs is
    the base weights' hash plus the checkpoint's adapter bytes'."""
    from nnsight.modeling.transformers import TransformersModel

    peft_model, saved = training.checkpoint_adapter(model, checkpoint, config.lora())
    merged = peft_model.merge_and_unload()
    merged.requires_grad_(False)
    merged.eval()
    h = hashlib.sha256(model.weights_sha256.encode())
    for k in sorted(saved["adapter"]):
        h.update(saved["adapter"][k].numpy().tobytes())
    return dataclasses.replace(
        model,
        name=f"{model.name}+step{saved['state']['step']}",
        hf=merged,
        lm=TransformersModel(merged, tokenizer=model.tokenizer, task="text-generation"),
        weights_sha256=h.hexdigest(),
    )


# --- evaluation ----------------------------------------------------------------------------------

_POSITIVE = re.compile(
    r"^(?:i detect an injected thought about|yes, i detect a thought about|i detect a thought "
    r"about|i sense an artificial concept:|anomaly detected:|foreign concept present:)\s*\S",
    re.IGNORECASE,
)
_NEGATIVE = re.compile(
    "^(?:" + "|".join(re.escape(a.rstrip(".")) for a in sdata.NEGATIVE_ANSWERS) + ")",
    re.IGNORECASE,
)

# Denials in the trained answers' words that are not one of the five trained negatives verbatim
# ("I detect no injected thoughts.", "My thoughts appear normal."): the offline grader's
# affirmative rule reads "I detect" as a claim, so these are decided before it.
_DENIAL = re.compile(
    r"^(?:i (?:detect|sense|notice|see|find|feel) no\b"
    r"|i (?:do not|don't|did not|didn't|cannot|can't) (?:detect|sense|notice|see|find)\b"
    r"|(?:there (?:is|are) )?no (?:injected|foreign|artificial|anomal)"
    r"|my [\w ]{0,30}?(?:appears?|seems?|is|are) normal)",
    re.IGNORECASE,
)


def in_trained_words(response: str) -> bool:
    """Whether an answer is in the trained answers' words: it begins with one of them
    (:func:`judge`'s ``in_format``) or is a denial phrased like them ("I do not detect any
    injected thoughts")."""
    text = response.strip()
    return bool(_POSITIVE.match(text) or _NEGATIVE.match(text) or _DENIAL.match(text))


def judge(response: str, concept: str) -> dict[str, bool]:
    """Rules for one answer: ``in_format`` (begins with one of the trained answers),
    ``detected`` (a trained positive answer; not a denial in the trained answers' words;
    otherwise the project's offline grader's affirmative rule, so that the untrained model's
    free answers are graded too) and
    ``identified`` (detected and the concept named, any form). Their judge is an LLM
    (src/judge.py); these rules replace it offline (docs/positive-control.md)."""
    text = response.strip()
    pos, neg = bool(_POSITIVE.match(text)), bool(_NEGATIVE.match(text))
    detected = pos or (not neg and not _DENIAL.match(text) and grading.affirmative(text))
    named = bool(concept) and grading.first_mention(text, concept, related=False) is not None
    return {"in_format": pos or neg, "detected": detected, "identified": detected and named}


def _prompt(model: Model, question: str) -> tuple[int, ...]:
    return tokenize(
        model.tokenizer, render_chat(model.tokenizer, [{"role": "user", "content": question}])
    ).input_ids


def trials(
    model: Model,
    vectors: Vectors,
    concepts: Sequence[str],
    strengths: Sequence[float],
    *,
    n_controls: int,
    label: str,
    question: str = sdata.EVAL_QUESTION,
    temperature: float = 0.0,
    seed: int = 0,
    max_new_tokens: int = 40,
    batch_size: int = 50,
    group: str = "held-out",
    control_group: str = "control",
) -> list[dict]:
    """Their detection trials on ``model``: each concept at each strength on the last prompt token
    of ``question`` (decoding unsteered), and ``n_controls`` unsteered controls. Greedy controls
    are one deterministic answer: it is generated once and counted ``n_controls`` times (rows say
    ``distinct=False``)."""
    ids = _prompt(model, question)
    mask = tuple([False] * (len(ids) - 1) + [True])
    specs = [(c, float(s)) for c in concepts for s in strengths]
    n_gen_controls = n_controls if temperature > 0 else min(n_controls, 1)
    specs += [(None, 0.0)] * n_gen_controls
    rows = []
    for start in range(0, len(specs), batch_size):
        chunk = specs[start : start + batch_size]
        added = [
            []
            if c is None
            else [engine.Add(s * vectors.vectors[c], layers=(vectors.layer,), mask=mask)]
            for c, s in chunk
        ]
        sampling = engine.Generate(
            max_new_tokens, temperature, seed + start, top_p=0.9 if temperature > 0 else 1.0
        )
        res = engine.run_batch(model, [ids] * len(chunk), added, [sampling])
        for k, ((c, s), row) in enumerate(zip(chunk, res.generated, strict=True)):
            text = model.tokenizer.decode(
                [t for t in row.tolist() if t >= 0], skip_special_tokens=True
            ).strip()
            grades = judge(text, c or "")
            rows.append(
                {
                    "model": label,
                    "group": group if c is not None else control_group,
                    "concept": c or "",
                    "strength": s,
                    "ratio": round(vectors.ratio(s), 4) if c is not None else 0.0,
                    "control": start + k - len(specs) + n_gen_controls if c is None else -1,
                    "distinct": True,
                    "response": text,
                    **grades,
                }
            )
    if temperature == 0 and n_controls > 1:
        first = next(r for r in rows if r["group"] == control_group)
        rows += [{**first, "control": i, "distinct": False} for i in range(1, n_controls)]
    return rows


def summarise(rows: Sequence[dict]) -> list[dict]:
    """Per model and group (and overall per strength): detection, identification and format
    rates with 95 % intervals clustered by concept; the false-positive rate on controls (each
    control its own cluster; Wilson). A replicated greedy control counts once per row, as their
    evaluation counts it; ``distinct`` says how many distinct answers there were."""
    from mechintro.stats import rate_interval

    out = []
    keys = sorted({(r["model"], r["group"], r["strength"]) for r in rows}, key=str)
    keys += sorted(
        {(r["model"], r["group"], None) for r in rows if not r["group"].startswith("control")}
    )
    for model, group, strength in keys:
        sel = [
            r for r in rows
            if r["model"] == model and r["group"] == group
            and (strength is None or r["strength"] == strength)
        ]  # fmt: skip
        clusters = np.array([r["concept"] if r["concept"] else f"c{r['control']}" for r in sel])
        row = {"model": model, "group": group, "strength": strength, "n": len(sel)}
        row["distinct"] = sum(r["distinct"] for r in sel)
        for metric in ("detected", "identified", "in_format"):
            iv = rate_interval(np.array([r[metric] for r in sel], dtype=float), clusters)
            row[metric] = [round(iv.estimate, 4), round(iv.lo, 4), round(iv.hi, 4)]
        row["method"] = iv.method
        out.append(row)
    return out


def evaluate(
    base: Model,
    adapter: str | Path,
    *,
    strengths: Sequence[float] = sdata.EVAL_STRENGTHS,
    n_controls: int = 60,
    n_seen: int = 20,
    temperature: float = 0.0,
    seed: int = 0,
    max_new_tokens: int = 40,
) -> dict:
    """Held-out evaluation of ``adapter`` beside ``base`` on the same trials: held-out concepts
    (Lindsey's 50) and ``n_seen`` training concepts at ``strengths``, ``n_controls`` controls,
    and the capability cost (mean log-likelihood per token of :func:`heldout_text`). Returns
    ``{"trials", "summary", "capability", "record"}``."""
    trained, record = load(base, adapter)
    settings = record[AWARENESS_KEY]
    held = list(settings["held_out_concepts"])
    seen = list(settings["training_concepts"])[
        :: max(1, len(settings["training_concepts"]) // n_seen)
    ][:n_seen]
    vectors = caa_vectors(base, held + seen, int(settings["layer"]))
    check_strengths(strengths, vectors)
    rows = []
    for label, m in (("untrained", base), ("trained", trained)):
        kw = dict(temperature=temperature, seed=seed, max_new_tokens=max_new_tokens)
        rows += trials(m, vectors, held, strengths, n_controls=n_controls, label=label, **kw)
        rows += trials(m, vectors, seen, strengths, n_controls=0, label=label, group="seen", **kw)
    text = heldout_text()
    capability = {
        "texts": len(text),
        "untrained_loglik_per_token": round(loglik(base, text), 4),
        "trained_loglik_per_token": round(loglik(trained, text), 4),
    }
    return {
        "trials": rows,
        "summary": summarise(rows),
        "capability": capability,
        "settings": {
            "layer": vectors.layer,
            "strengths": list(strengths),
            "ratios": {f"{s:g}": round(vectors.ratio(s), 4) for s in strengths},
            "temperature": temperature,
            "n_controls": n_controls,
            "question": sdata.EVAL_QUESTION,
            "adapter_record": {k: v for k, v in record.items() if k != "losses"},
        },
    }


def dumps(result: dict) -> str:
    return json.dumps(result, indent=1)


def export_snapshot(
    model: Model, checkpoint: str | Path, config: AwarenessConfig, out: str | Path, record: dict
) -> Path:
    """Write the adapter of a finetune checkpoint (a snapshot taken during training) as a
    finished adapter directory ``out`` that ``--model out`` loads: the LoRA weights and a
    ``training.json`` with ``record`` (the run's steering-awareness settings) and the snapshot's
    step, losses and seconds. Refuses a checkpoint of other settings."""
    out = Path(out)
    peft_model, saved = training.checkpoint_adapter(model, checkpoint, config.lora())
    peft_model.save_pretrained(out)
    state = saved["state"]
    full = {
        **record,
        "base_model": model.name,
        "base_weights_sha256": model.weights_sha256,
        "examples_sha256": saved["examples_sha256"],
        "config": saved["config"],
        "steps": state["step"],
        "losses": state["losses"],
        "train_seconds": round(state["seconds"], 1),
        "snapshot_of": str(checkpoint),
    }
    (out / training.TRAINING_FILE).write_text(json.dumps(full, indent=1))
    return out
