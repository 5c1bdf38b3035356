"""What a trial does to the model: interventions, each one class that plans its own edits.

An intervention answers one question, :meth:`Intervention.edits`: for a prompt of ``n_tokens``
tokens on this model, what happens to the residual stream after which layers? The answer is an
:class:`Edit` per layer, in three optional parts — an addition over prompt tokens (and generated
ones), a write at positions (replace, or add in units of the stream's norm), a projection — which
:func:`batch_edits` gathers over a batch's rows into the small tensors that
:func:`mechintro.edit.apply` applies inside every trace. Nothing else in the engine or the runner
knows which interventions exist: a new one is a class here (or anywhere) with an ``edits`` method,
and its fields are its identity in a run (:func:`identity`).

Example::

    add = Add(vector, layers=(12,), mask=(False,) * 5 + (True,) * 3, strength=4.0)
    result = engine.run_batch(model, [ids], [[add, Ablate(u, (14,))]], [NextToken((yes, no))])
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from mechintro.errors import MechintroError

if TYPE_CHECKING:
    from mechintro.models import Model


@dataclass(frozen=True, eq=False)
class Edit:
    """What one intervention does to one prompt's residual stream after one layer (positions
    count the prompt's tokens, before any padding). Every part is optional:

    * ``add`` ``(d_model,)`` times ``weights`` ``(n_tokens,)`` on the prompt tokens, and on every
      generated token if ``generated``;
    * ``select`` ``(n_tokens,)``, ``values`` and ``along`` ``(n_tokens, d_model)``:
      ``h ← h + select·(values − h) + ‖h‖·along`` on the prompt pass;
    * ``direction`` ``(d_model,)``: the coordinate along it set to ``to`` at every position, after
      the other parts (a projection; it acts on the whole batch, so every row must carry the
      same one).

    :func:`mechintro.edit.apply` is the expression.
    """

    add: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    generated: bool = False
    select: torch.Tensor | None = None
    values: torch.Tensor | None = None
    along: torch.Tensor | None = None
    direction: torch.Tensor | None = None
    to: float = 0.0

    def first(self, n_tokens: int) -> int:
        """The first prompt position this edit changes (``n_tokens``: none)."""
        if self.direction is not None:
            return 0
        touched = torch.zeros(n_tokens, dtype=torch.bool)
        if self.add is not None and self.weights is not None:
            touched |= self.weights.cpu() != 0
        if self.select is not None and self.along is not None:
            touched |= (self.select.cpu() != 0) | (self.along.cpu().abs().sum(-1) != 0)
        at = torch.nonzero(touched)
        return int(at[0, 0]) if len(at) else n_tokens

    def check(self, n_tokens: int, d_model: int) -> str | None:
        """What is wrong with this edit's shapes for a prompt of ``n_tokens`` tokens and a model
        of ``d_model`` (``None``: nothing)."""
        want = {
            "add": (d_model,),
            "weights": (n_tokens,),
            "select": (n_tokens,),
            "values": (n_tokens, d_model),
            "along": (n_tokens, d_model),
            "direction": (d_model,),
        }
        for group in (("add", "weights"), ("select", "values", "along")):
            if len({getattr(self, name) is None for name in group}) > 1:
                return f"gives only some of {', '.join(group)} (give all or none)"
        for name, shape in want.items():
            x = getattr(self, name)
            if x is not None and tuple(x.shape) != shape:
                return f"has {name} of shape {tuple(x.shape)}, not {shape}"
        return None


@runtime_checkable
class Intervention(Protocol):
    """Anything with an ``edits`` method: what it does to a prompt of ``n_tokens`` tokens on
    ``model``, per layer. Raise :class:`~mechintro.errors.MechintroError` (one line) for what
    does not fit the prompt or the model: the runner plans every trial's edits before any file
    exists, so a bad intervention is refused up front."""

    def edits(self, model: Model, n_tokens: int) -> dict[int, Edit]: ...


@dataclass(frozen=True, eq=False)
class Add:
    """Add ``strength * vector`` to the residual stream after each of ``layers`` on the prompt
    tokens where ``mask`` is true (or ``mask[t] * strength * vector`` where ``mask`` holds
    per-token weights), and on every generated token if ``generated`` (concept injection,
    Lindsey 2025). ``vector`` is ``(d_model,)`` (the same at every layer) or one per layer,
    ``(len(layers), d_model)`` (e.g. repeng's per-layer PCA directions)."""

    vector: torch.Tensor
    layers: tuple[int, ...]
    mask: tuple[bool, ...] | tuple[float, ...]
    strength: float = 1.0
    generated: bool = False

    def edits(self, model: Model | None, n_tokens: int) -> dict[int, Edit]:
        vector = self.vector * self.strength
        per_layer = vector if vector.ndim == 2 else vector.expand(len(self.layers), -1)
        if model is not None and per_layer.shape != (len(self.layers), model.d_model):
            raise MechintroError(
                f"injection vector has shape {tuple(self.vector.shape)} but {model.name} has "
                f"d_model {model.d_model}: compute vectors with this model"
            )
        if len(self.mask) != n_tokens:
            raise AssertionError("injection mask must cover the prompt's tokens exactly")
        weights = torch.tensor(self.mask, dtype=torch.float32)
        return {
            layer: Edit(add=v.float(), weights=weights, generated=self.generated)
            for layer, v in zip(self.layers, per_layer, strict=True)
        }


Injection = Add
"""Deprecated: the earlier name of :class:`Add` (whose strength defaults to 1)."""


@dataclass(frozen=True, eq=False)
class Ablate:
    """Set the residual stream's coordinate along the unit ``direction`` to ``to`` (0: project
    the direction out) after each of ``layers``, at every position (generated ones too), after
    any addition or patch at that layer. It acts on the whole batch, so every row of a batch
    carries the same one."""

    direction: torch.Tensor
    layers: tuple[int, ...]
    to: float = 0.0

    def edits(self, model: Model, n_tokens: int) -> dict[int, Edit]:
        if self.direction.shape != (model.d_model,):
            raise MechintroError(
                f"ablation direction has shape {tuple(self.direction.shape)}; {model.name} needs "
                f"({model.d_model},)"
            )
        unit = self.direction / self.direction.norm()
        return {layer: Edit(direction=unit, to=float(self.to)) for layer in self.layers}


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

    def edits(self, model: Model, n_tokens: int) -> dict[int, Edit]:
        vectors = self.vectors.reshape(-1, self.vectors.shape[-1]).float()
        if vectors.shape != (len(self.positions), model.d_model):
            raise MechintroError(
                f"patch of {tuple(self.vectors.shape)} for {len(self.positions)} positions: "
                f"{model.name} needs one ({model.d_model},) vector per position (activations of "
                "this model)"
            )
        if self.mode not in ("add", "norm_matched_add", "replace"):
            raise MechintroError(
                f"patch mode must be 'add' (or 'norm_matched_add') or 'replace', not {self.mode!r}"
            )
        in_prompt("patch", self.positions, n_tokens)
        if self.mode != "replace" and not bool((vectors.norm(dim=-1) > 0).all()):
            raise MechintroError(
                "a norm-matched addition needs non-zero vectors: an all-zero activation has no "
                "direction"
            )
        select, values = torch.zeros(n_tokens), torch.zeros(n_tokens, model.d_model)
        along = torch.zeros(n_tokens, model.d_model)
        at = torch.tensor(self.positions, dtype=torch.long)
        if self.mode == "replace":
            select[at], values[at] = 1.0, vectors
        else:
            along[at] = vectors / vectors.norm(dim=-1, keepdim=True) * self.coefficient
        return {self.layer: Edit(select=select, values=values, along=along)}


@dataclass(frozen=True, eq=False)
class Scale:
    """Multiply the residual stream after block ``layer`` by ``factors[k]`` at prompt token
    ``positions[k]`` (a per-position scale: 0 zeroes a token's stream, 2 doubles it)."""

    factors: tuple[float, ...]
    positions: tuple[int, ...]
    layer: int

    def edits(self, model: Model, n_tokens: int) -> dict[int, Edit]:
        if len(self.factors) != len(self.positions):
            raise MechintroError(
                f"{len(self.factors)} factors for {len(self.positions)} positions: give one each"
            )
        in_prompt("scaled", self.positions, n_tokens)
        select = torch.zeros(n_tokens)  # h + (1 - f)(0 - h) = f h
        select[list(self.positions)] = 1 - torch.tensor(self.factors, dtype=torch.float32)
        zeros = torch.zeros(n_tokens, model.d_model)
        return {self.layer: Edit(select=select, values=zeros, along=zeros)}


def in_prompt(what: str, positions: Sequence[int], n_tokens: int) -> None:
    """Refuse, in one line, ``positions`` outside a prompt of ``n_tokens`` tokens."""
    if not all(0 <= p < n_tokens for p in positions):
        raise MechintroError(
            f"{what} positions {list(positions)} fall outside the prompt's {n_tokens} tokens"
        )


# The trace's per-layer edit: (weights, add, generated, select, values, along, direction, to),
# built only of tensors, floats and None (what a remote trace may capture).
LayerEdit = tuple[Any, ...]


def batch_edits(
    model: Model, prompts: Sequence[Sequence[int]], rows: Sequence[Sequence[Intervention]]
) -> tuple[dict[int, LayerEdit], set[int]]:
    """Each row's interventions planned and gathered, per layer, into batch tensors over the
    left-padded width (on the model's device and dtype), and the layers that also edit generated
    tokens. A row takes one addition and one write per layer (give one :class:`Add` several
    layers); a projection is the whole batch's."""
    width, n, d = max(len(p) for p in prompts), len(prompts), model.d_model
    parts: dict[int, dict[str, Any]] = {}
    for row, (prompt, interventions) in enumerate(zip(prompts, rows, strict=True)):
        offset = width - len(prompt)
        taken: set[tuple[int, str]] = set()
        for x in interventions:
            for layer, e in x.edits(model, len(prompt)).items():
                model.check_layer(layer)
                if (problem := e.check(len(prompt), d)) is not None:
                    raise MechintroError(
                        f"{type(x).__name__}'s edit at layer {layer} {problem}: fix its edits()"
                    )
                for part in ("add", "select", "direction"):
                    if getattr(e, part) is not None and (layer, part) in taken:
                        raise MechintroError(
                            f"two interventions of one prompt both {_VERB[part]} at layer "
                            f"{layer}: give one Add with several layers, or split the batch"
                        )
                    if getattr(e, part) is not None:
                        taken.add((layer, part))
                _put(parts.setdefault(layer, {}), row, offset, e, (n, width, d))
    plan: dict[int, LayerEdit] = {}
    for layer, at in parts.items():
        on = {
            k: tuple(t.to(model.device, model.dtype) for t in v)
            for k, v in at.items()
            if k != "directions"
        }
        direction, to = _one_projection(at.get("directions"), n)
        if direction is not None:
            direction = direction.to(model.device, model.dtype)
        plan[layer] = (*on.get("add", (None,) * 3), *on.get("select", (None,) * 3), direction, to)
    later = {layer for layer, e in plan.items() if e[1] is not None or e[6] is not None}
    return plan, later


_VERB = {"add": "add", "select": "write", "direction": "project"}


def _put(at: dict[str, Any], row: int, offset: int, e: Edit, shape: tuple[int, int, int]) -> None:
    """Write row ``row``'s edit (its prompt from ``offset`` of the padded width) into one layer's
    batch tensors ``at`` (made on first use; ``shape``: batch, width, d_model)."""
    n, width, d = shape
    if e.add is not None and e.weights is not None:  # checked: both or neither
        if "add" not in at:
            at["add"] = (torch.zeros(n, width, 1), torch.zeros(n, 1, d), torch.zeros(n, 1))
        weights, add, generated = at["add"]
        weights[row, offset:, 0] = e.weights
        add[row, 0] = e.add
        generated[row, 0] = float(e.generated)
    if e.select is not None and e.values is not None and e.along is not None:
        if "select" not in at:
            at["select"] = tuple(torch.zeros(n, width, k) for k in (1, d, d))
        select, values, along = at["select"]
        select[row, offset:, 0] = e.select
        values[row, offset:] = e.values
        along[row, offset:] = e.along
    if e.direction is not None:
        at.setdefault("directions", {})[row] = (e.direction, e.to)


def _one_projection(
    directions: dict[int, tuple[torch.Tensor, float]] | None, n: int
) -> tuple[torch.Tensor | None, float]:
    if not directions:
        return None, 0.0
    first, to = directions[0] if 0 in directions else next(iter(directions.values()))
    if len(directions) != n or any(
        t != to or not torch.equal(u, first) for u, t in directions.values()
    ):
        raise MechintroError("an Ablate acts on the whole batch: give every prompt the same ones")
    return first, to


def first_touched(model: Model | None, prompt: Sequence[int], row: Sequence[Intervention]) -> int:
    """The first prompt position any of ``row``'s interventions changes (``len(prompt)``: none).
    ``model`` may be ``None`` for rows of :class:`Add` only (they need no model to plan)."""
    n = len(prompt)
    for x in row:
        if model is None and not isinstance(x, Add):
            raise AssertionError("pass the model: only an Add is planned without one")
        for e in x.edits(model, n).values():  # type: ignore[arg-type]  # None only for an Add
            n = min(n, e.first(len(prompt)))
    return n


def identity(x: object) -> list[Any]:
    """An intervention as JSON-able values for a run's identity: its class and fields, tensors
    as their sha256 (so a resume with other vectors is refused)."""
    import hashlib

    if not dataclasses.is_dataclass(x):
        raise MechintroError(
            f"{type(x).__name__} is not a dataclass: a run stores an intervention's fields as its "
            "identity, so make it a (frozen) dataclass"
        )
    out: list[Any] = [type(x).__name__]
    for f in dataclasses.fields(x):
        value = getattr(x, f.name)
        if isinstance(value, torch.Tensor):
            data = value.detach().float().cpu().contiguous().numpy()
            value = [list(data.shape), hashlib.sha256(data.tobytes()).hexdigest()]
        out.append([f.name, json.loads(json.dumps(value, default=str))])
    return out
