"""The one edit expression: what every intervention does to the residual stream, in one function.

Every trace body of :mod:`mechintro.engine` (the forward pass, generation, and local decoding's
hooks) calls :func:`apply` on a layer's output with that layer's edit, a tuple of tensors that
:mod:`mechintro.interventions` builds from the batch's interventions before the trace. The function
uses only torch, and :mod:`mechintro.engine` registers this module with nnsight to be shipped by
value (``nnsight.register``), so a remote server that has no mechintro rebuilds it from its source
(docs/engineering.md, "Remote-safe traces"; tested with mechintro hidden from the server).
"""

from __future__ import annotations

from typing import Any

import torch


def apply(h: torch.Tensor, edit: tuple[Any, ...], step: int, rows: Any) -> None:
    """Edit ``h`` (a layer's output, ``(batch, positions, d_model)``) in place.

    ``edit`` is ``(weights, add, generated, select, values, along, direction, to)``, each ``None``
    when no row of the batch has that part:

    * addition: ``h += weights * add`` on the prompt pass (``weights (B, T, 1)``,
      ``add (B, 1, d)``), ``h[:, -1] += generated * add`` on each generated token
      (``generated (B, 1)``);
    * writing: ``h += select * (values - h) + ‖h‖ * along`` on the prompt pass (``select
      (B, T, 1)``: 1 where ``values (B, T, d)`` replace the stream; ``along (B, T, d)``: added
      in units of the stream's norm);
    * projection: ``h -= ((h · direction) - to) * direction`` at every position, after the other
      two (``direction (d,)``, a unit vector; ``to``: the coordinate set along it).

    ``step`` is 0 on the prompt pass and counts generated tokens after it; ``rows`` selects the
    batch rows still being computed (local decoding drops finished rows; else ``slice(None)``).
    """
    weights, add, generated, select, values, along, direction, to = edit
    if step == 0:
        if add is not None:
            h += weights.to(h.device) * add.to(h.device)
        if select is not None:
            select, values, along = select.to(h.device), values.to(h.device), along.to(h.device)
            h += select * (values - h) + h.norm(dim=-1, keepdim=True) * along
    elif add is not None:
        h[:, -1] += generated[rows].to(h.device) * add[rows, 0].to(h.device)
    if direction is not None:
        x = h if step == 0 else h[:, -1:]
        u = direction.to(h.device)
        x -= ((x * u).sum(-1, keepdim=True) - to) * u
