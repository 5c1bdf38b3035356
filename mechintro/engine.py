"""The injection engine: the only module that opens nnsight traces.

Concept injection (Lindsey 2025) adds ``strength x v`` to the residual stream at the output of
decoder block ``L`` on chosen token positions. Everything mechintro measures is one of two passes:

* **logit mode** — one forward pass over a batch of prompts; the next-token log-probabilities of
  chosen answer tokens at the last prompt position (vgel's no-sampling measurement).
* **generation mode** — the prompt pass, then sampled tokens; injection can continue on every
  generated token (Lindsey's experiment 1) or stop with the prompt.

Each row of a batch carries its own :class:`Injection` (vector, strength, layers, token mask), so
trials with different concepts, strengths and layers share one forward pass. Prompts are left-
padded; masks are per-prompt and padded alongside, so an injection lands on the same tokens
whatever else is in the batch. Because attention is causal, steering a prefix of the prompt in a
single pass is exactly vgel's KV-cache protocol: the unsteered suffix only sees the steered
prefix through its keys and values.

Trace bodies use only torch and builtins and save a few small tensors, so the same code runs
under ``remote=True`` on NDIF (docs/engineering.md, "Remote-safe traces").
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

from mechintro.arch import get_module, resid_of, text_config
from mechintro.errors import MechintroError
from mechintro.models import Model
from mechintro.progress import quiet_third_party


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
class Injection:
    """What one trial adds: ``vector`` (already multiplied by the strength) at each of ``layers``
    on the prompt tokens where ``mask`` is true (or ``mask[t] x vector`` where ``mask`` holds
    per-token weights), and on every generated token if ``generated``.
    ``vector`` is ``(d_model,)`` (the same vector at every layer) or ``(len(layers), d_model)``
    (one per layer, e.g. repeng's per-layer PCA directions)."""

    vector: torch.Tensor
    layers: tuple[int, ...]
    mask: tuple[bool, ...] | tuple[float, ...]
    generated: bool = False


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


def _plan(
    model: Model, width: int, injections: Sequence[Injection | None]
) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per injected layer: prompt mask ``(B, T, 1)``, vectors ``(B, 1, d)``, generated mask
    ``(B, 1)``."""
    n = len(injections)
    plan: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    for row, inj in enumerate(injections):
        if inj is None:
            continue
        per_layer = inj.vector if inj.vector.ndim == 2 else inj.vector.expand(len(inj.layers), -1)
        if per_layer.shape != (len(inj.layers), model.d_model):
            raise MechintroError(
                f"injection vector has shape {tuple(inj.vector.shape)} but {model.name} has "
                f"d_model {model.d_model}: compute vectors with this model"
            )
        for layer, vector in zip(inj.layers, per_layer, strict=True):
            model.check_layer(layer)
            if layer not in plan:
                plan[layer] = (
                    torch.zeros(n, width, 1),
                    torch.zeros(n, 1, model.d_model),
                    torch.zeros(n, 1),
                )
            mask, vec, gen = plan[layer]
            mask[row, width - len(inj.mask) :, 0] = torch.tensor(inj.mask, dtype=torch.float32)
            vec[row, 0] = vector.float()
            gen[row, 0] = float(inj.generated)
    return {
        layer: tuple(t.to(model.device, model.dtype) for t in tensors)
        for layer, tensors in plan.items()
    }


def _check_prompts(
    model: Model, prompts: Sequence[Sequence[int]], injections: Sequence[Injection | None]
) -> None:
    if len(prompts) == 0:
        raise MechintroError("empty batch: pass at least one prompt")
    if len(prompts) != len(injections):
        raise AssertionError("one injection (or None) per prompt")
    for p, inj in zip(prompts, injections, strict=True):
        if inj is not None and len(inj.mask) != len(p):
            raise AssertionError("injection mask must cover the prompt's tokens exactly")


def forward(
    model: Model,
    prompts: Sequence[Sequence[int]],
    injections: Sequence[Injection | None],
    *,
    answer_ids: Sequence[int],
    record: bool = False,
    resid_dtype: torch.dtype = torch.float16,
    ablate: dict[int, torch.Tensor | tuple[torch.Tensor, float]] | None = None,
    prefix: int = 0,
) -> BatchResult:
    """Logit mode: one batched forward pass with per-row injections.

    ``prefix > 0`` says that every prompt has the same length and that they share their first
    ``prefix`` tokens, which no injection touches (the injected-thoughts intro, an info
    document; :func:`shared_prefix` finds it): the prefix's keys and values are then computed
    once per model and prefix (:func:`prefix_state`) and only the rest of each prompt runs — the
    same numbers to float rounding (tested), a fraction of the work. The runner passes one
    ``prefix`` for a whole run, so every batch takes the same path.

    Args:
        prompts: token ids per trial (rendered prompts; no special tokens are added).
        injections: one :class:`Injection` or ``None`` (no injection) per prompt.
        answer_ids: token ids whose next-token log-probabilities are returned.
        record: also return every layer's residual stream over the prompt, as ``resid_dtype``
            (float16 unless given).
        ablate: ``{layer: direction}`` — after any injection at ``layer``, project the unit
            ``direction`` out of every row's residual stream at every position;
            ``{layer: (direction, c)}`` sets the coordinate along it to ``c`` instead of 0.
        prefix: the shared, uninjected prefix length to compute once (0: none; see above).
    """
    _check_prompts(model, prompts, injections)
    ablations = {}
    for layer, spec in (ablate or {}).items():
        direction, target = spec if isinstance(spec, tuple) else (spec, 0.0)
        model.check_layer(layer)
        if direction.shape != (model.d_model,):
            raise MechintroError(
                f"ablation direction has shape {tuple(direction.shape)}; {model.name} needs "
                f"({model.d_model},)"
            )
        ablations[layer] = (
            (direction / direction.norm()).to(model.device, model.dtype),
            float(target),
        )
    extra: dict[str, object] = {}
    if prefix:
        if ablations:
            raise AssertionError(
                "prefix reuse and ablation exclude each other: an ablation acts on the prefix too"
            )
        extra["past_key_values"], prefix_resid, injections = _reuse_prefix(
            model, prompts, injections, prefix, record, resid_dtype
        )
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
    width = batch["input_ids"].shape[1]
    plan = _plan(model, width, injections)
    answers = torch.tensor(list(answer_ids), dtype=torch.long, device=model.device)
    logprobs, finite, resid = _forward_trace(
        model, batch, extra, plan, {}, ablations, answers, record, resid_dtype
    )

    nonfinite = ~finite
    if record:
        assert resid is not None  # recorded
        if prefix:  # the prefix is the same (and uninjected) in every row: check it once
            assert prefix_resid is not None  # recorded: the prefix's residuals were kept
            nonfinite |= ~torch.isfinite(resid).flatten(1).all(1) | (
                not bool(torch.isfinite(prefix_resid).all())
            )
            resid = torch.cat([prefix_resid.expand(len(prompts), -1, -1, -1), resid], 2)
        else:
            resid = resid * batch["attention_mask"].cpu()[:, None, :, None].to(resid.dtype)
            nonfinite |= ~torch.isfinite(resid).flatten(1).all(1)
    return BatchResult(
        answer_logprobs=logprobs,
        resid=resid if record else None,
        generated=None,
        nonfinite=nonfinite,
    )


def _forward_trace(
    model: Model,
    batch: dict[str, torch.Tensor],
    extra: dict[str, object],
    plan: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    patches: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    ablations: dict[int, tuple[torch.Tensor, float]],
    answers: torch.Tensor,
    record: bool,
    resid_dtype: torch.dtype = torch.float16,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The one forward-pass trace. At each layer's output, in this order: the injections of
    ``plan`` (:func:`_plan`), the patches of ``patches`` (:func:`_patch_plan`), the ablations,
    then recording; returns the answers' log-probabilities at the last position, whether each
    row's logits are finite, and the residuals (``record``). The body calls no mechintro
    function, so it runs remotely as it runs here."""
    cap = getattr(text_config(model.hf.config), "final_logit_softcapping", None)
    layers = get_module(model.lm, model.arch.layers)
    unembed = get_module(model.lm, model.arch.unembed)
    n_layers = model.n_layers
    # The trace's `with` on a line of its own: nnsight finds the body from that line.
    with _remote_errors(model), torch.no_grad():
        with model.lm.trace(batch, remote=model.remote, logits_to_keep=1, **extra):
            stacked = []
            for i in range(n_layers):
                if not record and i not in plan and i not in patches and i not in ablations:
                    continue
                out = layers[i].output
                h = out[0] if isinstance(out, tuple) else out
                if i in plan:
                    mask, vec, _ = plan[i]
                    h += mask.to(h.device) * vec.to(
                        h.device
                    )  # no-ops here; on a remote GPU they move
                if i in patches:
                    select, values, units = patches[i]
                    select, values, units = (
                        select.to(h.device),
                        values.to(h.device),
                        units.to(h.device),
                    )
                    h += select * (values - h) + h.norm(dim=-1, keepdim=True) * units
                if i in ablations:
                    u, target = ablations[i]
                    u = u.to(h.device)
                    h -= ((h * u).sum(-1, keepdim=True) - target) * u
                if record:
                    stacked.append(h.detach().to("cpu", resid_dtype))
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


def shared_prefix(prompts: Sequence[Sequence[int]], injections: Sequence[Injection | None]) -> int:
    """Length of the prefix every prompt shares and no injection touches — 0 unless all prompts
    have the same length (then no row is padded); at least one token is always left to run."""
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
    for inj in injections:
        if inj is not None:
            n = next((i for i, m in enumerate(inj.mask[:n]) if m), n)
    return n


def _reuse_prefix(
    model: Model,
    prompts: Sequence[Sequence[int]],
    injections: Sequence[Injection | None],
    prefix: int,
    record: bool,
    resid_dtype: torch.dtype = torch.float16,
) -> tuple[Any, torch.Tensor | None, list[Injection | None]]:
    """A batch's copy of the prefix's keys and values, the prefix's residuals (with ``record``),
    and the injections shifted to start after the prefix."""
    if model.remote or shared_prefix(prompts, injections) < prefix:
        raise AssertionError(
            "prefix reuse needs a local model and a prefix shared by every prompt and untouched by "
            "injections"
        )
    cache, resid = prefix_state(model, prompts[0][:prefix], record, resid_dtype)
    cache = copy.deepcopy(cache)
    cache.batch_repeat_interleave(len(prompts))
    shifted = [
        None if inj is None else Injection(inj.vector, inj.layers, inj.mask[prefix:], inj.generated)
        for inj in injections
    ]
    return cache, resid, shifted


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


def generate(
    model: Model,
    prompts: Sequence[Sequence[int]],
    injections: Sequence[Injection | None],
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
    """Generation mode: sample ``max_new_tokens`` per prompt with per-row injections.

    Injection applies on the prompt pass at the masked positions, then, for rows whose
    injection has ``generated=True``, on every generated token. ``temperature=0`` is greedy;
    otherwise plain sampling unless ``top_k`` (0: off) or ``top_p`` (1: off) truncate it, as
    transformers' warpers do (the open Lindsey replications sample with transformers' default
    ``top_k=50``). Sampling is seeded with ``seed`` without
    touching the caller's global RNG state. ``record`` returns the prompt pass's residuals
    (as ``resid_dtype``). ``prefix``: as in :func:`forward`, the shared uninjected prefix whose
    keys and values are computed once; the prompt pass then runs only the rest. ``prune``: on a
    local model, stop computing each row once it has ended (:func:`_generate_local`; the same
    tokens, less work);
    ``False`` keeps every row to the end, in nnsight's trace (what a remote model always does).
    ``rows_of=(offset, n)``: these prompts are rows ``offset…`` of an ``n``-row batch and draw
    that batch's random numbers at their rows (local decoding only, when sampling).
    """
    if max_new_tokens < 1:
        raise MechintroError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if not temperature >= 0:
        raise MechintroError(f"temperature must be 0 or more, got {temperature}")
    _check_prompts(model, prompts, injections)
    batch = _pad(model, prompts)
    width = batch["input_ids"].shape[1]
    extra: dict[str, object] = {}
    if prefix:  # generate() gets the whole prompt and runs only the tokens the cache lacks
        extra["past_key_values"], prefix_resid, injections = _reuse_prefix(
            model, prompts, injections, prefix, record, resid_dtype
        )
    plan = _plan(model, width - prefix, injections)
    eos = _eos_ids(model)
    config = _generation_config(model, eos, temperature, max_new_tokens, top_k=top_k, top_p=top_p)
    local = prune and _decodes_locally(model)
    if rows_of is not None and temperature > 0 and not local:
        raise MechintroError(
            "a part of a sampled batch samples like the whole batch only with local decoding: "
            "run the whole batch"
        )
    if local:
        sequences, resid = _generate_local(
            model, batch, extra, plan, {}, record, config, max_new_tokens=max_new_tokens,
            seed=seed, rows_of=rows_of, resid_dtype=resid_dtype,
        )  # fmt: skip
    else:
        sequences, resid = _generate_trace(
            model, batch, extra, plan, {}, record, config, max_new_tokens=max_new_tokens,
            seed=seed, resid_dtype=resid_dtype,
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
    if record:
        assert resid is not None  # recorded
        if prefix:
            assert prefix_resid is not None  # recorded: the prefix's residuals were kept
            resid = torch.cat([prefix_resid.expand(len(prompts), -1, -1, -1), resid], 2)
        resid = resid * batch["attention_mask"].cpu()[:, None, :, None].to(resid.dtype)
        nonfinite |= ~torch.isfinite(resid).flatten(1).all(1)
    return BatchResult(
        answer_logprobs=None,
        resid=resid if record else None,
        generated=generated,
        nonfinite=nonfinite,
    )


def _generate_trace(
    model: Model,
    batch: dict[str, torch.Tensor],
    extra: dict[str, object],
    plan: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    patches: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    record: bool,
    config: object,
    *,
    max_new_tokens: int,
    seed: int,
    resid_dtype: torch.dtype = torch.float16,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The one generation trace: the prompt pass takes the injections of ``plan``, the patches
    and the recording; each generated token takes the injections marked ``generated``. Returns
    the full sequences and the prompt pass's residuals (``record``). Remote-safe, like
    :func:`_forward_trace`."""
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
                            if i not in plan and not (step == 0 and (record or i in patches)):
                                continue
                            out = layers[i].output
                            h = out[0] if isinstance(out, tuple) else out
                            if i in plan:
                                mask, vec, gen = plan[i]
                                if step == 0:
                                    h += mask.to(h.device) * vec.to(h.device)
                                else:
                                    h[:, -1] += gen.to(h.device) * vec[:, 0].to(h.device)
                            if i in patches and step == 0:
                                select, values, units = patches[i]
                                select, values = select.to(h.device), values.to(h.device)
                                units = units.to(h.device)
                                h += select * (values - h) + h.norm(dim=-1, keepdim=True) * units
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
    plan: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    patches: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
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
                mask, vec, gen = plan[i]
                if step == 0:
                    h += mask.to(h.device) * vec.to(h.device)
                else:
                    h[:, -1] += gen[rows].to(h.device) * vec[rows, 0].to(h.device)
            if i in patches and step == 0:
                select, values, units = patches[i]
                select, values = select.to(h.device), values.to(h.device)
                units = units.to(h.device)
                h += select * (values - h) + h.norm(dim=-1, keepdim=True) * units
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
    hooked = [i for i in range(model.n_layers) if record or i in plan or i in patches]
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
    float32. Stops before the unembedding (it is not needed)."""
    if len(prompts) == 0:
        raise MechintroError("no prompts given")
    batch = _pad(model, prompts)
    layers = get_module(model.lm, model.arch.layers)
    n_layers = model.n_layers
    with _remote_errors(model), torch.no_grad():
        with model.lm.trace(batch, remote=model.remote) as tracer:
            last = []
            for i in range(n_layers):
                out = layers[i].output
                h = out[0] if isinstance(out, tuple) else out
                last.append(h[:, -1].detach().to("cpu", torch.float32))
            acts = nnsight.save(torch.stack(last, 1))
            tracer.stop()
    return acts


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


@dataclass(frozen=True, eq=False)
class Patch:
    """Activations written into one prompt at chosen token positions (Activation Oracles,
    Patchscopes): ``vectors[k]`` goes to prompt token ``positions[k]`` (counted from the prompt's
    first token, before any padding) at the output of decoder block ``layer``.

    ``mode="add"`` (also spelled ``"norm_matched_add"``) is the oracles' norm-matched addition
    ``h ← h + ‖h‖·v/‖v‖·coefficient`` (Karvonen et al. 2025; their code's default coefficient is
    1 at layer 1); ``mode="replace"`` is Patchscopes' ``h ← v`` (``coefficient`` unused).
    """

    vectors: torch.Tensor
    positions: tuple[int, ...]
    layer: int = 1
    mode: str = "add"
    coefficient: float = 1.0


@dataclass(frozen=True, eq=False)
class Add:
    """Add ``strength * vector`` to the residual stream after each of ``layers`` on the prompt
    tokens where ``mask`` is true, and on every generated token if ``generated`` (concept
    injection, Lindsey 2025). ``vector`` is ``(d_model,)`` or one per layer,
    ``(len(layers), d_model)``. :class:`Injection` is the same with the strength already
    multiplied in."""

    vector: torch.Tensor
    layers: tuple[int, ...]
    mask: tuple[bool, ...]
    strength: float = 1.0
    generated: bool = False

    def injection(self) -> Injection:
        return Injection(self.vector * self.strength, self.layers, self.mask, self.generated)


@dataclass(frozen=True, eq=False)
class Ablate:
    """Set the residual stream's coordinate along the unit ``direction`` to ``to`` (0: project
    the direction out) after each of ``layers``, at every position, after any addition or patch
    at that layer. It acts on the whole batch, so every row of a batch carries the same one."""

    direction: torch.Tensor
    layers: tuple[int, ...]
    to: float = 0.0


Project = Ablate


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


Intervention = Add | Injection | Ablate | Patch
Readout = NextToken | Generate | Resid


def run_batch(
    model: Model,
    prompts: Sequence[Sequence[int]],
    interventions: Sequence[Sequence[Intervention]],
    readouts: Sequence[Readout],
    *,
    prefix: int = 0,
) -> BatchResult:
    """One batch: per prompt, what is done to it (:class:`Add`, :class:`Ablate`,
    :class:`Patch`), and for the batch, what is read (:class:`NextToken` or :class:`Generate`,
    and :class:`Resid`). Dispatches to the one trace of its kind, so the numbers are those of
    :func:`forward`, :func:`generate`, :func:`patched_forward` and :func:`patched_generate`.

    A row takes at most one addition and one patch; a patched batch adds, ablates and records
    nothing (yet); ablation is read in logit mode only. Each refusal is one line.

    Example::

        add = Add(vector, layers=(12,), mask=(False,) * 5 + (True,) * 3, strength=4.0)
        result = run_batch(model, [ids], [[add]], [NextToken((yes_id, no_id)), Resid()])
    """
    if len(interventions) != len(prompts):
        raise MechintroError("pass one list of interventions (possibly empty) per prompt")
    adds: list[Injection | None] = []
    patches: list[Patch | None] = []
    ablating: list[tuple[Ablate, ...]] = []
    for row in interventions:
        add = [x for x in row if isinstance(x, Add | Injection)]
        patch = [x for x in row if isinstance(x, Patch)]
        if len(add) > 1 or len(patch) > 1:
            raise MechintroError(
                "a prompt takes at most one Add and one Patch: give one Add with several layers"
            )
        adds.append(None if not add else add[0].injection() if isinstance(add[0], Add) else add[0])
        patches.append(patch[0] if patch else None)
        ablating.append(tuple(x for x in row if isinstance(x, Ablate)))
    if any(a != ablating[0] for a in ablating):
        raise MechintroError("an Ablate acts on the whole batch: give every prompt the same ones")
    ablate: dict[int, torch.Tensor | tuple[torch.Tensor, float]] = {
        layer: (x.direction, x.to) for x in ablating[0] for layer in x.layers
    }
    record = any(isinstance(r, Resid) for r in readouts)
    resid_dtype = next((r.dtype for r in readouts if isinstance(r, Resid)), torch.float16)
    generation = [r for r in readouts if isinstance(r, Generate)]
    answers = [r for r in readouts if isinstance(r, NextToken)]
    if len(generation) + len(answers) > 1:
        raise MechintroError("read one NextToken or one Generate per batch (and Resid)")
    answer_ids = list(answers[0].answer_ids) if answers else []
    if any(p is not None for p in patches):
        if any(a is not None for a in adds) or ablate or record:
            raise MechintroError("a patched batch takes no Add, Ablate or Resid: split the batch")
        if generation:
            g = generation[0]
            return patched_generate(
                model, prompts, patches, max_new_tokens=g.max_new_tokens,
                temperature=g.temperature, seed=g.seed,
            )  # fmt: skip
        return patched_forward(model, prompts, patches, answer_ids=answer_ids)
    if generation:
        if ablate:
            raise MechintroError("Ablate is read in logit mode only: use NextToken")
        g = generation[0]
        return generate(
            model, prompts, adds, max_new_tokens=g.max_new_tokens, temperature=g.temperature,
            seed=g.seed, record=record, resid_dtype=resid_dtype, prefix=prefix, top_k=g.top_k,
            top_p=g.top_p,
            rows_of=g.rows_of,
        )  # fmt: skip
    return forward(
        model, prompts, adds, answer_ids=answer_ids, record=record, resid_dtype=resid_dtype,
        ablate=ablate or None, prefix=prefix,
    )  # fmt: skip


def _patch_plan(
    model: Model, width: int, prompts: Sequence[Sequence[int]], patches: Sequence[Patch | None]
) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per patched layer: replace mask ``(B, T, 1)``, replacement values ``(B, T, d)`` and the
    unit directions times the coefficient for addition ``(B, T, d)`` (zero off the positions)."""
    plan: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    for row, (prompt, patch) in enumerate(zip(prompts, patches, strict=True)):
        if patch is None:
            continue
        model.check_layer(patch.layer)
        vectors = patch.vectors.reshape(-1, patch.vectors.shape[-1]).float()
        if vectors.shape != (len(patch.positions), model.d_model):
            raise MechintroError(
                f"patch of {tuple(patch.vectors.shape)} for {len(patch.positions)} positions: "
                f"{model.name} "
                f"needs one ({model.d_model},) vector per position (activations of this model)"
            )
        if patch.mode not in ("add", "norm_matched_add", "replace"):
            raise MechintroError(
                f"patch mode must be 'add' (or 'norm_matched_add') or 'replace', not {patch.mode!r}"
            )
        if not all(0 <= p < len(prompt) for p in patch.positions):
            raise MechintroError(
                f"patch positions {list(patch.positions)} fall outside the prompt's {len(prompt)} "
                "tokens"
            )
        if patch.mode != "replace" and not bool((vectors.norm(dim=-1) > 0).all()):
            raise MechintroError(
                "a norm-matched addition needs non-zero vectors: an all-zero activation has no "
                "direction"
            )
        if patch.layer not in plan:
            plan[patch.layer] = (
                torch.zeros(len(prompts), width, 1),
                torch.zeros(len(prompts), width, model.d_model),
                torch.zeros(len(prompts), width, model.d_model),
            )
        select, values, units = plan[patch.layer]
        at = torch.tensor([width - len(prompt) + p for p in patch.positions], dtype=torch.long)
        if patch.mode == "replace":
            select[row, at, 0] = 1.0
            values[row, at] = vectors
        else:
            units[row, at] = vectors / vectors.norm(dim=-1, keepdim=True) * patch.coefficient
    return {
        layer: tuple(t.to(model.device, model.dtype) for t in tensors)
        for layer, tensors in plan.items()
    }


def check_patches(
    model: Model, prompts: Sequence[Sequence[int]], patches: Sequence[Patch | None]
) -> None:
    """Refuse, with one line, a patch that does not fit its prompt or this model (the checks
    :func:`patched_forward` makes), before anything runs."""
    for prompt, patch in zip(prompts, patches, strict=True):
        _patch_plan(model, len(prompt), [prompt], [patch])


def patched_forward(
    model: Model,
    prompts: Sequence[Sequence[int]],
    patches: Sequence[Patch | None],
    *,
    answer_ids: Sequence[int],
) -> BatchResult:
    """Logit mode with patches: one batched forward pass, each row's :class:`Patch` (or ``None``)
    applied at its positions; the next-token log-probabilities of ``answer_ids`` at the last
    prompt position. Rows may patch different layers, modes and numbers of positions."""
    if len(prompts) == 0 or len(prompts) != len(patches):
        raise MechintroError("pass one patch (or None) per prompt, and at least one prompt")
    batch = _pad(model, prompts)
    plan = _patch_plan(model, batch["input_ids"].shape[1], prompts, patches)
    answers = torch.tensor(list(answer_ids), dtype=torch.long, device=model.device)
    logprobs, finite, _ = _forward_trace(model, batch, {}, {}, plan, {}, answers, False)
    return BatchResult(answer_logprobs=logprobs, resid=None, generated=None, nonfinite=~finite)


def patched_generate(
    model: Model,
    prompts: Sequence[Sequence[int]],
    patches: Sequence[Patch | None],
    *,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    prune: bool = True,
) -> BatchResult:
    """Generation with patches on the prompt pass only (generated tokens are not patched, as in
    the oracles' code); sampling and ``prune`` as in :func:`generate` (``temperature=0``:
    greedy; seeded)."""
    if max_new_tokens < 1:
        raise MechintroError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if not temperature >= 0:
        raise MechintroError(f"temperature must be 0 or more, got {temperature}")
    if len(prompts) == 0 or len(prompts) != len(patches):
        raise MechintroError("pass one patch (or None) per prompt, and at least one prompt")
    batch = _pad(model, prompts)
    width = batch["input_ids"].shape[1]
    plan = _patch_plan(model, width, prompts, patches)
    eos = _eos_ids(model)
    config = _generation_config(model, eos, temperature, max_new_tokens)
    run = _generate_local if prune and _decodes_locally(model) else _generate_trace
    sequences, _ = run(
        model, batch, {}, {}, plan, False, config, max_new_tokens=max_new_tokens, seed=seed
    )
    new = sequences[:, width:]
    generated = torch.full((len(prompts), max_new_tokens), -1, dtype=torch.long)
    for row in range(len(prompts)):
        for j, tok in enumerate(new[row].tolist()):
            generated[row, j] = tok
            if tok in eos:
                break
    return BatchResult(
        answer_logprobs=None,
        resid=None,
        generated=generated,
        nonfinite=torch.zeros(len(prompts), dtype=torch.bool),
    )
