"""The injection engine: the only module that opens nnsight traces.

Concept injection (Lindsey 2025) adds ``strength x v`` to the residual stream at the output of
decoder block ``L`` on chosen token positions. Everything mechintro measures is one of two passes:

* **logit mode** — one forward pass over a batch of prompts; the next-token log-probabilities of
  chosen answer tokens at the last prompt position (vgel's no-sampling measurement).
* **generation mode** — the prompt pass, then sampled tokens; injection can continue on every
  generated token (Lindsey's experiment 1) or stop with the prompt.

Each row of a batch carries its own interventions (:mod:`mechintro.interventions`: :class:`Add`,
:class:`Patch`, :class:`Ablate`, or any class with an ``edits`` method), so trials with different
concepts, strengths and layers share one forward pass; :func:`run_batch` is the one entry point.
Prompts are left-padded; masks are per-prompt and padded alongside, so an injection lands on the
same tokens whatever else is in the batch. Because attention is causal, steering a prefix of the
prompt in a single pass is exactly vgel's KV-cache protocol: the unsteered suffix only sees the
steered prefix through its keys and values.

Trace bodies use only torch, builtins and the edit function (:mod:`mechintro.edit`, shipped by
value) and save a few small tensors, so the same code runs under ``remote=True`` on NDIF
(docs/engineering.md, "Remote-safe traces").
"""

from __future__ import annotations

import contextlib
import copy
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import nnsight  # mechintro/__init__ defined anyio's classes before this (docs/engineering.md)
import torch

from mechintro import edit
from mechintro.arch import get_module, resid_of, text_config
from mechintro.edit import apply as _apply_edit
from mechintro.errors import MechintroError
from mechintro.interventions import (
    Ablate,
    Add,
    Edit,
    Intervention,
    LayerEdit,
    Patch,
    batch_edits,
    first_touched,
)
from mechintro.interventions import (
    Injection as Injection,  # deprecated alias of Add, kept importable
)
from mechintro.models import Model
from mechintro.progress import quiet_third_party

# The trace bodies call the edit function; shipped by value, a server without mechintro runs it.
nnsight.register(edit)

__all__ = [
    "Ablate",
    "Add",
    "BatchResult",
    "Edit",
    "Generate",
    "Intervention",
    "NextToken",
    "Patch",
    "Resid",
    "last_token_resid",
    "prefix_state",
    "run_batch",
    "shared_prefix",
    "swap_forward",
]


@contextlib.contextmanager
def _remote_errors(model: Model) -> Iterator[None]:
    """Turn a remote job's failure, or an unreachable server, into one line naming the fix; and
    keep transformers' and nnsight's known deprecation warnings out of the user's session."""
    if not model.remote or model.remote == "local":
        with quiet_third_party():
            yield
        return
    import httpx
    import websocket
    from nnsight.intervention.backends.remote import RemoteError
    from nnsight.schema.config import CONFIG

    where = model.remote if isinstance(model.remote, str) else f"NDIF at {CONFIG.API.HOST}"
    try:
        with quiet_third_party():
            yield
    except RemoteError as exc:
        raise MechintroError(f"the remote job failed on {where}: {exc}") from exc
    except (OSError, httpx.HTTPError, websocket.WebSocketException) as exc:
        raise MechintroError(
            f"cannot reach {where} ({exc}): check the URL (or NDIF_HOST) and NDIF_API_KEY, "
            "then run the same command again (committed trials are kept)"
        ) from exc


@dataclass(frozen=True, eq=False)
class BatchResult:
    """What a batch returns. ``T`` is the batch's padded prompt length (left padding).

    Attributes:
        answer_logprobs: ``(batch, answer)`` float32 log-probabilities at the last prompt position
            (logit mode), else ``None``.
        resid: ``(batch, layer, T, d_model)`` residual stream after every block over the prompt
            (float16 unless the readout asked for another dtype; left-padded; zeros on padding),
            or ``None`` when not recorded.
        generated: ``(batch, new_tokens)`` int64 sampled token ids, ``-1`` after the end of
            sequence (generation mode), else ``None``.
        nonfinite: ``(batch,)`` bool, true where a logit or recorded activation was NaN/inf.
    """

    answer_logprobs: torch.Tensor | None
    resid: torch.Tensor | None
    generated: torch.Tensor | None
    nonfinite: torch.Tensor


def _pad(model: Model, prompts: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    width = max(len(p) for p in prompts)
    pad = model.tokenizer.pad_token_id
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    attn = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if len(p):
            ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
            attn[i, width - len(p) :] = 1
    return {"input_ids": ids.to(model.device), "attention_mask": attn.to(model.device)}


@dataclass(frozen=True)
class NextToken:
    """Read the next-token log-probabilities of ``answer_ids`` at the last prompt position."""

    answer_ids: tuple[int, ...]


@dataclass(frozen=True)
class Generate:
    """Read ``max_new_tokens`` sampled tokens (``temperature=0``: greedy; seeded)."""

    max_new_tokens: int
    temperature: float = 1.0
    seed: int = 0
    top_k: int = 0
    top_p: float = 1.0
    rows_of: tuple[int, int] | None = None
    """``(offset, n)``: these prompts are rows ``offset…`` of an ``n``-row batch seeded with
    ``seed``, and sample what they would sample there (a batch split to fit in memory)."""


@dataclass(frozen=True)
class Resid:
    """Read every layer's residual stream over the prompt, as ``dtype`` (float16 by default;
    float32 or bfloat16: see the dtype-error table in ``docs/performance.md``)."""

    dtype: torch.dtype = torch.float16
    last: bool = False
    """only each prompt's last position (``(batch, layer, 1, d_model)``; vector extraction)"""


Readout = NextToken | Generate | Resid


def run_batch(
    model: Model,
    prompts: Sequence[Sequence[int]],
    interventions: Sequence[Sequence[Intervention]],
    readouts: Sequence[Readout],
    *,
    prefix: int = 0,
    prune: bool = True,
) -> BatchResult:
    """One batch: per prompt, what is done to it (any
    :class:`~mechintro.interventions.Intervention`: :class:`Add`, :class:`Ablate`, :class:`Patch`,
    or one of your own), and for the batch, what is read (:class:`NextToken` or
    :class:`Generate`, and :class:`Resid`). The engine's one entry point: every pass of mechintro
    — the runner's batches, the oracle, the judge, the causal check, vector extraction — comes
    through here, but two: Latent Introspection's model swap (:func:`swap_forward`, plain
    transformers: two models in one pass is not an nnsight trace) and the trainers' and the
    learned grader's passes with gradients or hooks of their own (``training``,
    ``introspect.train``, ``learned_grader``). :func:`forward` and :func:`generate` are deprecated
    wrappers of this function.

    Each intervention plans its own edits before the trace
    (:meth:`~mechintro.interventions.Intervention.edits`); the trace applies them with one
    expression (:func:`mechintro.edit.apply`). A prompt takes one addition and one write per
    layer; a projection (:class:`Ablate`) is the whole batch's. ``prefix > 0`` says that every
    prompt has the same length and that they share their first ``prefix`` tokens, which no
    intervention touches (:func:`shared_prefix` finds it): the prefix's keys and values are then
    computed once per model and prefix (:func:`prefix_state`) and only the rest of each prompt
    runs — the same numbers to float rounding (tested), a fraction of the work. ``prune=False``
    keeps every generated row to the end (as a remote model does) instead of local decoding's
    dropping finished rows (:func:`_generate_local`).

    Example::

        add = Add(vector, layers=(12,), mask=(False,) * 5 + (True,) * 3, strength=4.0)
        result = run_batch(model, [ids], [[add]], [NextToken((yes_id, no_id)), Resid()])
    """
    if len(prompts) == 0:
        raise MechintroError("empty batch: pass at least one prompt")
    if len(interventions) != len(prompts):
        raise MechintroError("pass one list of interventions (possibly empty) per prompt")
    resid = [r for r in readouts if isinstance(r, Resid)]
    generation = [r for r in readouts if isinstance(r, Generate)]
    answers = [r for r in readouts if isinstance(r, NextToken)]
    if len(generation) + len(answers) > 1 or len(resid) > 1:
        raise MechintroError("read one NextToken or one Generate per batch (and one Resid)")
    read = resid[0] if resid else None
    if generation:
        return _generate(model, prompts, interventions, generation[0], read, prefix, prune)
    answer_ids = list(answers[0].answer_ids) if answers else []
    return _forward(model, prompts, interventions, answer_ids, read, prefix)


def _rows(
    prompts: Sequence[Sequence[int]],
    injections: Sequence[Intervention | None],
    ablate: dict[int, torch.Tensor | tuple[torch.Tensor, float]] | None = None,
) -> list[list[Intervention]]:
    """The earlier entry points' arguments (one intervention or ``None`` per prompt, the
    ablations of every prompt) as :func:`run_batch`'s rows."""
    if len(prompts) != len(injections):
        raise MechintroError("pass one injection or patch (or None) per prompt")
    ablations: list[Intervention] = []
    for layer, spec in (ablate or {}).items():
        direction, to = spec if isinstance(spec, tuple) else (spec, 0.0)
        ablations.append(Ablate(direction, (layer,), float(to)))
    return [([] if x is None else [x]) + ablations for x in injections]


def _deprecated(name: str, readouts: str) -> None:
    warnings.warn(
        f"mechintro.engine.{name} is deprecated: call run_batch(model, prompts, rows, "
        f"{readouts}) with one list of interventions per prompt",
        DeprecationWarning,
        stacklevel=3,
    )


def _with_resid(record: bool, dtype: torch.dtype) -> list[Readout]:
    return [Resid(dtype)] if record else []


def forward(
    model: Model,
    prompts: Sequence[Sequence[int]],
    injections: Sequence[Intervention | None],
    *,
    answer_ids: Sequence[int],
    record: bool = False,
    resid_dtype: torch.dtype = torch.float16,
    ablate: dict[int, torch.Tensor | tuple[torch.Tensor, float]] | None = None,
    prefix: int = 0,
) -> BatchResult:
    """Deprecated (use :func:`run_batch`): one forward pass with one intervention (an
    :class:`Add` or a :class:`Patch`, or ``None``) per prompt, reading :class:`NextToken`
    ``answer_ids`` (and :class:`Resid` with ``record``); ``ablate`` is
    ``{layer: direction}`` or ``{layer: (direction, to)}``, an :class:`Ablate` of every row."""
    _deprecated("forward", "[NextToken(answer_ids)]")
    readouts = [NextToken(tuple(answer_ids)), *_with_resid(record, resid_dtype)]
    return run_batch(model, prompts, _rows(prompts, injections, ablate), readouts, prefix=prefix)


def generate(
    model: Model,
    prompts: Sequence[Sequence[int]],
    injections: Sequence[Intervention | None],
    *,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    record: bool = False,
    resid_dtype: torch.dtype = torch.float16,
    prefix: int = 0,
    prune: bool = True,
    top_k: int = 0,
    top_p: float = 1.0,
    rows_of: tuple[int, int] | None = None,
) -> BatchResult:
    """Deprecated (use :func:`run_batch` with :class:`Generate`): sample ``max_new_tokens`` per
    prompt with one intervention (an :class:`Add` or a :class:`Patch`, or ``None``) per prompt.
    ``prune``: as in :func:`run_batch`."""
    _deprecated("generate", "[Generate(max_new_tokens, temperature, seed)]")
    sampling = Generate(max_new_tokens, temperature, seed, top_k, top_p, rows_of)
    readouts = [sampling, *_with_resid(record, resid_dtype)]
    rows = _rows(prompts, injections)
    return run_batch(model, prompts, rows, readouts, prefix=prefix, prune=prune)


# Deprecated (use :func:`run_batch`): the patching entry points were :func:`forward` and
# :func:`generate` under other names (each takes one intervention, an :class:`Add` or a
# :class:`Patch`, or ``None`` per prompt).
patched_forward = forward
patched_generate = generate


def check(
    model: Model, prompts: Sequence[Sequence[int]], rows: Sequence[Sequence[Intervention]]
) -> None:
    """Refuse, with one line, an intervention that does not fit its prompt or this model (each
    row planned alone, as :func:`run_batch` plans it), before anything runs."""
    for prompt, row in zip(prompts, rows, strict=True):
        batch_edits(model, [prompt], [row])


def _after_prefix(plan: dict[int, LayerEdit], prefix: int) -> dict[int, LayerEdit]:
    """The plan's position-indexed parts (weights, select, values, along) without the prefix's
    positions."""
    if not prefix:
        return plan
    cut = (0, 3, 4, 5)
    return {
        layer: tuple(x[:, prefix:] if k in cut and x is not None else x for k, x in enumerate(edit))
        for layer, edit in plan.items()
    }


def _forward(
    model: Model,
    prompts: Sequence[Sequence[int]],
    rows: Sequence[Sequence[Intervention]],
    answer_ids: Sequence[int],
    resid: Resid | None,
    prefix: int,
) -> BatchResult:
    """One batched forward pass: the edits of ``rows``, the next-token log-probabilities of
    ``answer_ids`` and, with ``resid``, the residual streams."""
    record, dtype = resid is not None, resid.dtype if resid is not None else torch.float16
    last = resid is not None and resid.last
    plan, _ = batch_edits(model, prompts, rows)
    extra: dict[str, object] = {}
    prefix_resid = None
    if prefix:
        extra["past_key_values"], prefix_resid = _reuse_prefix(
            model, prompts, rows, prefix, record and not last, dtype
        )
        plan = _after_prefix(plan, prefix)
        prompts = [p[prefix:] for p in prompts]
        batch = _pad(model, prompts)  # equal lengths: no padding
        batch["attention_mask"] = torch.ones(
            len(prompts),
            prefix + batch["input_ids"].shape[1],
            dtype=torch.long,
            device=model.device,
        )
    else:
        batch = _pad(model, prompts)
    answers = torch.tensor(list(answer_ids), dtype=torch.long, device=model.device)
    logprobs, finite, stream = _forward_trace(
        model, batch, extra, plan, answers, record, dtype, last
    )
    nonfinite = ~finite
    if stream is not None:  # the trace read the last position alone, and prompts of a prefix
        # have one length (no padding to zero)
        mask = None if prefix or last else batch["attention_mask"]
        stream, more = _whole_stream(stream, None if last else prefix_resid, mask, last=False)
        nonfinite |= more
    return BatchResult(answer_logprobs=logprobs, resid=stream, generated=None, nonfinite=nonfinite)


def _whole_stream(
    stream: torch.Tensor,
    prefix_resid: torch.Tensor | None,
    mask: torch.Tensor | None,
    last: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's recorded residual streams ``(batch, layer, position, d_model)`` as returned, and
    which rows hold a non-finite value: the shared prefix's streams (computed once,
    :func:`prefix_state`) in front, the padding of ``mask`` zeroed (None: none), only the last
    position kept with ``last``."""
    if prefix_resid is not None:
        stream = torch.cat([prefix_resid.expand(len(stream), -1, -1, -1), stream], 2)
    if mask is not None:
        stream = stream * mask.cpu()[:, None, :, None].to(stream.dtype)
    if last:
        stream = stream[:, :, -1:]
    return stream, ~torch.isfinite(stream).flatten(1).all(1)


def _forward_trace(
    model: Model,
    batch: dict[str, torch.Tensor],
    extra: dict[str, object],
    plan: dict[int, LayerEdit],
    answers: torch.Tensor,
    record: bool,
    resid_dtype: torch.dtype = torch.float16,
    last: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The one forward-pass trace. At each layer's output: the edit of ``plan``
    (:func:`mechintro.interventions.batch_edits`, applied by :func:`mechintro.edit.apply`), then
    recording (``last``: the last position only); returns the answers' log-probabilities at the
    last position, whether each row's logits are finite, and the residuals (``record``). The body
    calls only torch and the edit function nnsight ships by value, so it runs remotely as it runs
    here."""
    cap = getattr(text_config(model.hf.config), "final_logit_softcapping", None)
    layers = get_module(model.lm, model.arch.layers)
    unembed = get_module(model.lm, model.arch.unembed)
    n_layers = model.n_layers
    # The trace's `with` on a line of its own: nnsight finds the body from that line.
    with _remote_errors(model), torch.no_grad():
        with model.lm.trace(batch, remote=model.remote, logits_to_keep=1, **extra):
            stacked = []
            for i in range(n_layers):
                if not record and i not in plan:
                    continue
                out = layers[i].output
                h = out[0] if isinstance(out, tuple) else out
                if i in plan:
                    _apply_edit(h, plan[i], 0, slice(None))
                if record:
                    stacked.append((h[:, -1:] if last else h).detach().to("cpu", resid_dtype))
            if record:
                resid = nnsight.save(torch.stack(stacked, 1))
            logits = unembed.output[:, -1].float()
            if cap:
                logits = torch.tanh(logits / cap) * cap
            finite = nnsight.save(torch.isfinite(logits).all(-1).cpu())
            logprobs = nnsight.save(
                torch.log_softmax(logits, -1)[:, answers.to(logits.device)].cpu()
            )
    return logprobs, finite, resid if record else None


# Shorter shared prefixes are not worth a second pass (the runner's threshold).
MIN_SHARED_PREFIX = 16
_PREFIX_STATE: dict[
    str, tuple[weakref.ref[Any], tuple[int, ...], torch.dtype | None, Any, torch.Tensor | None]
] = {}


def shared_prefix(
    prompts: Sequence[Sequence[int]],
    interventions: Sequence[Intervention | Sequence[Intervention] | None],
    model: Model | None = None,
) -> int:
    """Length of the prefix every prompt shares and no intervention touches — 0 unless all
    prompts have the same length (then no row is padded); at least one token is always left to
    run. ``interventions``: per prompt, ``None``, one intervention or a list of them; ``model``
    may be left out when they are all :class:`Add` (the others need it to plan their edits)."""
    if len({len(p) for p in prompts}) != 1:
        return 0
    first = list(prompts[0])
    n = len(first) - 1
    for p in prompts[1:]:
        k = 0
        for a, b in zip(first[:n], p, strict=False):
            if a != b:
                break
            k += 1
        n = k
    for prompt, row in zip(prompts, interventions, strict=True):
        n = min(n, first_touched(model, prompt, _as_row(row)))
    return n


def _as_row(row: Intervention | Sequence[Intervention] | None) -> Sequence[Intervention]:
    if row is None:
        return ()
    if isinstance(row, Intervention):
        return (row,)
    return row


def _reuse_prefix(
    model: Model,
    prompts: Sequence[Sequence[int]],
    rows: Sequence[Sequence[Intervention]],
    prefix: int,
    record: bool,
    resid_dtype: torch.dtype = torch.float16,
) -> tuple[Any, torch.Tensor | None]:
    """A batch's copy of the prefix's keys and values, and the prefix's residuals (with
    ``record``)."""
    if model.remote or shared_prefix(prompts, rows, model) < prefix:
        raise AssertionError(
            "prefix reuse needs a local model and a prefix shared by every prompt and untouched by "
            "interventions"
        )
    cache, resid = prefix_state(model, prompts[0][:prefix], record, resid_dtype)
    cache = copy.deepcopy(cache)
    cache.batch_repeat_interleave(len(prompts))
    return cache, resid


def prefix_state(
    model: Model,
    prefix: Sequence[int],
    record: bool,
    resid_dtype: torch.dtype = torch.float16,
) -> tuple[Any, torch.Tensor | None]:
    """The keys and values of ``prefix`` (batch 1) and, with ``record``, its residual stream after
    every block ``(1, layer, len(prefix), d_model)`` as ``resid_dtype`` — computed once per model
    and prefix (the last one is kept), with plain hooks: nothing is injected into a shared
    prefix."""
    held = _PREFIX_STATE.get("last")
    if (
        held is not None
        and held[0]() is model.hf
        and held[1] == tuple(prefix)
        and (held[2] == resid_dtype or not record)
    ):
        return held[3], held[4]
    blocks = get_module(model.hf, model.arch.layers)
    outputs: list[torch.Tensor] = []
    hooks = (
        [
            b.register_forward_hook(
                lambda _m, _i, out: outputs.append(resid_of(out).detach().to("cpu", resid_dtype))
            )
            for b in blocks
        ]
        if record
        else []
    )
    try:
        with (
            torch.no_grad(),
            quiet_third_party(),
        ):  # transformers 5 deprecates reading `.past_key_values`
            ids = torch.tensor([list(prefix)], device=model.device)
            cache = model.hf(
                input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, logits_to_keep=1
            ).past_key_values
    finally:
        for h in hooks:
            h.remove()
    resid = torch.stack(outputs, 1) if record else None
    held_dtype = resid_dtype if record else None
    _PREFIX_STATE["last"] = (weakref.ref(model.hf), tuple(prefix), held_dtype, cache, resid)
    return cache, resid


def _generate(
    model: Model,
    prompts: Sequence[Sequence[int]],
    rows: Sequence[Sequence[Intervention]],
    g: Generate,
    resid: Resid | None,
    prefix: int,
    prune: bool,
) -> BatchResult:
    """Generation: the edits of ``rows`` on the prompt pass (additions marked ``generated`` and
    projections on every generated token too), then ``g.max_new_tokens`` sampled tokens per
    prompt.

    ``temperature=0`` is greedy; otherwise plain sampling unless ``top_k`` (0: off) or ``top_p``
    (1: off) truncate it, as transformers' warpers do (the open Lindsey replications sample with
    transformers' default ``top_k=50``). Sampling is seeded with ``g.seed`` without touching the
    caller's global RNG state. ``resid`` returns the prompt pass's residuals. ``prefix``: as in
    :func:`run_batch`; the prompt pass then runs only the tokens the cache lacks. ``prune``: on
    a local model, stop computing each row once it has ended (:func:`_generate_local`; the same
    tokens, less work); ``False`` keeps every row to the end, in nnsight's trace (what a remote
    model always does). ``g.rows_of=(offset, n)``: these prompts are rows ``offset…`` of an
    ``n``-row batch and draw that batch's random numbers at their rows (local decoding only,
    when sampling).
    """
    max_new_tokens, temperature = g.max_new_tokens, g.temperature
    if max_new_tokens < 1:
        raise MechintroError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if not temperature >= 0:
        raise MechintroError(f"temperature must be 0 or more, got {temperature}")
    record, dtype = resid is not None, resid.dtype if resid is not None else torch.float16
    plan, later = batch_edits(model, prompts, rows)
    batch = _pad(model, prompts)
    width = batch["input_ids"].shape[1]
    extra: dict[str, object] = {}
    prefix_resid = None
    if prefix:  # generate() gets the whole prompt and runs only the tokens the cache lacks
        extra["past_key_values"], prefix_resid = _reuse_prefix(
            model, prompts, rows, prefix, record, dtype
        )
        plan = _after_prefix(plan, prefix)
    eos = _eos_ids(model)
    config = _generation_config(
        model, eos, temperature, max_new_tokens, top_k=g.top_k, top_p=g.top_p
    )
    local = prune and _decodes_locally(model)
    if g.rows_of is not None and temperature > 0 and not local:
        raise MechintroError(
            "a part of a sampled batch samples like the whole batch only with local decoding: "
            "run the whole batch"
        )
    if local:
        sequences, stream = _generate_local(
            model, batch, extra, plan, record, config, max_new_tokens=max_new_tokens,
            seed=g.seed, rows_of=g.rows_of, resid_dtype=dtype,
        )  # fmt: skip
    else:
        sequences, stream = _generate_trace(
            model, batch, extra, plan, later, record, config, max_new_tokens=max_new_tokens,
            seed=g.seed, resid_dtype=dtype,
        )  # fmt: skip

    new = sequences[:, width:]
    generated = torch.full((len(prompts), max_new_tokens), -1, dtype=torch.long)
    for row in range(len(prompts)):
        ended = False
        for j, tok in enumerate(new[row].tolist()):
            generated[row, j] = tok
            if tok in eos:
                ended = True
                break
        if not ended and new.shape[1] < max_new_tokens:
            raise AssertionError("generation stopped early without an end-of-sequence token")
    nonfinite = torch.zeros(len(prompts), dtype=torch.bool)
    if stream is not None:
        last = resid is not None and resid.last
        stream, nonfinite = _whole_stream(stream, prefix_resid, batch["attention_mask"], last)
    return BatchResult(answer_logprobs=None, resid=stream, generated=generated, nonfinite=nonfinite)


def _generate_trace(
    model: Model,
    batch: dict[str, torch.Tensor],
    extra: dict[str, object],
    plan: dict[int, LayerEdit],
    later: set[int],
    record: bool,
    config: object,
    *,
    max_new_tokens: int,
    seed: int,
    resid_dtype: torch.dtype = torch.float16,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The one generation trace: the prompt pass takes the edits of ``plan`` and the recording;
    each generated token takes the edits of the layers in ``later`` (additions marked
    ``generated``, projections). Returns the full sequences and the prompt pass's residuals
    (``record``). Remote-safe, like :func:`_forward_trace`."""
    generate_kwargs = {"generation_config": config, "remote": model.remote, **extra}
    layers = get_module(model.lm, model.arch.layers)
    n_layers = model.n_layers
    # When every row ends early the bounded loop is cut short by design; the result is read in a
    # separate invoke, so nnsight's "never reached" warning carries no information here.
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*was never reached.*")
        torch.manual_seed(seed)
        # The seed is set again inside the trace: a remote server samples with its own generator.
        # No comment line inside a trace body (remote execution drops it and misplaces the blocks
        # after it), and the trace's `with` on a line of its own (docs/engineering.md).
        with _remote_errors(model), torch.no_grad():
            with model.lm.generate(**generate_kwargs) as tracer:
                with tracer.invoke(batch):
                    torch.manual_seed(seed)
                    for step in tracer.iter[:max_new_tokens]:
                        stacked = []
                        for i in range(n_layers):
                            edited = i in plan and (step == 0 or i in later)
                            if not edited and not (record and step == 0):
                                continue
                            out = layers[i].output
                            h = out[0] if isinstance(out, tuple) else out
                            if edited:
                                _apply_edit(h, plan[i], step, slice(None))
                            if record and step == 0:
                                stacked.append(h.detach().to("cpu", resid_dtype))
                        if record and step == 0:
                            resid = nnsight.save(torch.stack(stacked, 1))
                with tracer.invoke():
                    sequences = nnsight.save(tracer.result.cpu())
    return sequences, resid if record else None


def _decodes_locally(model: Model) -> bool:
    """Whether :func:`_generate_local` can stand in for :func:`_generate_trace`: a local model
    and a transformers whose decoding loop it mirrors (``_prefill`` and ``custom_generate``)."""
    return not model.remote and hasattr(model.hf, "_prefill")


def _generate_local(
    model: Model,
    batch: dict[str, torch.Tensor],
    extra: dict[str, object],
    plan: dict[int, LayerEdit],
    record: bool,
    config: object,
    *,
    max_new_tokens: int,
    seed: int,
    rows_of: tuple[int, int] | None = None,
    resid_dtype: torch.dtype = torch.float16,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`_generate_trace` for a local model, dropping rows from the batch once they end.

    transformers' ``generate`` keeps a finished row in the batch until every row has ended,
    computing tokens that are thrown away; here each decoding step runs only the rows still
    going, so a batch costs what its answers' lengths cost. Everything else is the trace's: the
    same ``generate`` set-up (its ``custom_generate`` hook runs this loop, a copy of
    transformers' sampling loop), the same arithmetic at the same layers through plain forward
    hooks, and the same random stream — sampling draws one exponential variate per vocabulary
    entry for *every* row of the batch at each step, as ``torch.multinomial`` does, and the
    running rows take theirs, so a row samples what it would have sampled in the full batch.
    Tokens equal the trace's up to float rounding of a batch's shape: a row's logits can move by
    ~1e-5 when the batch shrinks (the matrix library splits the work differently), which
    decides a token only at a near-tie. At least two rows are kept while any runs (one finished
    row rides along), since a one-row matrix product takes another code path. With
    ``rows_of=(offset, n)`` the variates are drawn for ``n`` rows and these rows take theirs from
    ``offset`` on: a batch split in parts samples what the whole batch would.
    """
    state: dict[str, Any] = {"step": 0, "rows": slice(None)}
    stacked: list[torch.Tensor] = []

    def hook(i: int) -> Callable[[object, object, Any], None]:
        def run(_module: object, _inputs: object, out: Any) -> None:
            h = out[0] if isinstance(out, tuple) else out
            step, rows = state["step"], state["rows"]
            if i in plan:
                _apply_edit(h, plan[i], step, rows)
            if record and step == 0:
                stacked.append(h.detach().to("cpu", resid_dtype))

        return run

    def decode(
        hf: Any,
        input_ids: torch.Tensor,
        logits_processor: Any,
        stopping_criteria: Any,
        generation_config: Any,
        **model_kwargs: Any,
    ) -> torch.Tensor:
        model_kwargs.pop("synced_gpus", None)
        model_kwargs.pop("streamer", None)
        n, pad = input_ids.shape[0], generation_config._pad_token_tensor.to(input_ids.device)
        offset, drawn = rows_of if rows_of is not None else (0, n)
        rows = torch.arange(n, device=input_ids.device)  # the batch's rows still computed
        alive = torch.ones(n, dtype=torch.bool, device=input_ids.device)
        ids, new = input_ids, []  # ids: the computed rows' sequences; new: every row's tokens
        outputs = hf._prefill(input_ids, generation_config, model_kwargs, is_first_iteration=True)
        while True:
            model_kwargs = hf._update_model_kwargs_for_generation(outputs, model_kwargs)
            logits = outputs.logits[:, -1].to(copy=True, dtype=torch.float32, device=ids.device)
            scores = logits_processor(ids, logits)
            del outputs
            nxt = _next_token(scores, generation_config.do_sample, drawn, offset + rows)
            nxt = torch.where(alive, nxt, pad)
            token = torch.full((n,), int(pad), dtype=torch.long, device=ids.device)
            token[rows] = nxt
            new.append(token)
            ids = torch.cat([ids, nxt[:, None]], dim=-1)
            alive = alive & ~stopping_criteria(ids, None)
            if not bool(alive.any()):
                break
            keep = alive.clone()
            if int(keep.sum()) == 1 and len(rows) > 1:  # a finished row rides along
                keep[int(torch.nonzero(~alive)[0])] = True
            if not bool(keep.all()):
                index = torch.nonzero(keep).squeeze(1)
                rows, alive, ids = rows[index], alive[index], ids[index]
                _select_rows(model_kwargs, index)
            state["step"], state["rows"] = state["step"] + 1, rows
            inputs = hf.prepare_inputs_for_generation(ids, next_sequence_length=1, **model_kwargs)
            outputs = hf(**inputs, return_dict=True)
        return torch.cat([input_ids, torch.stack(new, 1)], dim=-1)

    blocks = get_module(model.hf, model.arch.layers)
    hooked = [i for i in range(model.n_layers) if record or i in plan]
    handles = [blocks[i].register_forward_hook(hook(i)) for i in hooked]
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad(), quiet_third_party():
            torch.manual_seed(seed)
            sequences = model.hf.generate(
                **batch, generation_config=config, custom_generate=decode, **extra
            )
    finally:
        for h in handles:
            h.remove()
    return sequences.cpu(), torch.stack(stacked, 1) if record else None


def _next_token(
    scores: torch.Tensor, do_sample: bool, drawn: int, variate_rows: torch.Tensor
) -> torch.Tensor:
    """Each computed row's next token: greedy, or sampled as ``torch.multinomial(probs, 1)``
    samples it — argmax(probs / q), q ~ Exp(1) drawn for the whole batch (``drawn`` rows), the
    computed rows taking theirs (``variate_rows``)."""
    if not do_sample:
        return scores.argmax(-1)
    probs = torch.softmax(scores, dim=-1)
    if not bool((torch.isfinite(probs) & (probs >= 0)).all()):
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
    q = torch.empty((drawn, probs.shape[-1]), dtype=probs.dtype, device=probs.device)
    return (probs / q.exponential_(1)[variate_rows]).argmax(-1)


def _select_rows(model_kwargs: dict[str, Any], index: torch.Tensor) -> None:
    """Keep only the rows ``index`` of the generation's cache, attention mask and positions."""
    cache: Any = model_kwargs.get("cache", model_kwargs.get("past_key_values"))
    cache.batch_select_indices(index)
    for key in ("attention_mask", "position_ids"):
        if model_kwargs.get(key) is not None:
            model_kwargs[key] = model_kwargs[key][index]


def last_token_resid(model: Model, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
    """Residual stream at each prompt's last token after every block: ``(batch, layer, d_model)``
    float32 (:func:`run_batch` reading :class:`Resid` at the last position)."""
    if len(prompts) == 0:
        raise MechintroError("no prompts given")
    rows: list[list[Intervention]] = [[] for _ in prompts]
    result = run_batch(model, prompts, rows, [Resid(torch.float32, last=True)])
    assert result.resid is not None  # the Resid readout fills it
    return result.resid[:, :, 0]


def _generation_config(
    model: Model,
    eos: list[int],
    temperature: float,
    max_new_tokens: int,
    *,
    top_k: int = 0,
    top_p: float = 1.0,
) -> object:
    """Sampling at ``temperature`` (plain by default: ``top_k=0`` and ``top_p=1`` truncate
    nothing), greedy at 0; exactly ``max_new_tokens`` unless every row ends with one of
    ``eos``."""
    from transformers import GenerationConfig

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise MechintroError(f"top_k must be an integer, 0 (off) or more, got {top_k!r}")
    if not 0 < top_p <= 1:
        raise MechintroError(f"top_p must be in (0, 1] (1: off), got {top_p!r}")
    return GenerationConfig(
        do_sample=temperature > 0,
        temperature=temperature if temperature > 0 else None,
        top_k=top_k if temperature > 0 else None,
        top_p=top_p if temperature > 0 else None,
        max_new_tokens=max_new_tokens,
        pad_token_id=model.tokenizer.pad_token_id,
        eos_token_id=eos,
    )


def _eos_ids(model: Model) -> list[int]:
    ids: set[int] = set()
    for source in (
        model.tokenizer.eos_token_id,
        getattr(model.hf.generation_config, "eos_token_id", None),
    ):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(int(i) for i in source)
    if not ids:
        raise MechintroError(
            f"{model.name} defines no end-of-sequence token: set tokenizer.eos_token"
        )
    return sorted(ids)


def swap_forward(
    model: Model,
    cache_model: Model,
    prompts: Sequence[Sequence[int]],
    prefix_lens: Sequence[int],
    *,
    answer_ids: Sequence[int],
) -> BatchResult:
    """Latent Introspection's model swap: ``cache_model`` reads the first ``prefix_lens[i]``
    tokens of prompt ``i`` (filling the KV cache, as its "em-ft" condition does with a finetune),
    then ``model`` reads the rest with that cache and answers. Nothing is injected.

    Plain transformers, one prompt at a time, local only (two models' caches cannot meet in one
    remote trace). The models must share an architecture and tokenizer; a prefix length of 0
    is an ordinary forward pass of ``model``.
    """
    a, b = text_config(model.hf.config), text_config(cache_model.hf.config)

    def shape(c: Any) -> tuple[object, ...]:
        return (
            c.num_hidden_layers,
            getattr(c, "num_key_value_heads", None),
            c.hidden_size,
            c.vocab_size,
        )

    if shape(a) != shape(b) or model.tokenizer.get_vocab() != cache_model.tokenizer.get_vocab():
        raise MechintroError(
            f"{cache_model.name} cannot fill {model.name}'s KV cache: the model swap needs two "
            "models of one "
            "architecture and tokenizer (e.g. a model and its finetune)"
        )
    answers = torch.tensor(list(answer_ids), dtype=torch.long)
    rows = []
    for ids, k in zip(prompts, prefix_lens, strict=True):
        if not 0 <= k < len(ids):
            raise MechintroError(
                f"swap prefix of {k} tokens must leave at least one of the prompt's {len(ids)} "
                "tokens to the answering model"
            )
        ids_t = torch.tensor([list(ids)], dtype=torch.long, device=model.device)
        with torch.no_grad(), quiet_third_party():
            cache = (
                cache_model.hf(input_ids=ids_t[:, :k], use_cache=True).past_key_values
                if k
                else None
            )
            logits = (
                model.hf(input_ids=ids_t[:, k:], past_key_values=cache, use_cache=cache is not None)
                .logits[0, -1]
                .float()
            )
        cap = getattr(a, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        rows.append(torch.log_softmax(logits.cpu(), -1)[answers])
    logprobs = torch.stack(rows)
    return BatchResult(
        answer_logprobs=logprobs,
        resid=None,
        generated=None,
        nonfinite=~torch.isfinite(logprobs).all(1),
    )
