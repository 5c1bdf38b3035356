"""Read a trial as a transcript.

``mi.show(ds, 12)`` renders trial 12 of a run; ``mi.show(ds.sel(trial=...))`` (or a list of
trial indices) renders several. In Jupyter the result displays as HTML: the prompt token by token
with the injected window highlighted (and its layer, strength and concept), then the full
response (generation mode) or the next-token P(yes)/P(no) (logit mode), then the grader
verdicts — the offline rule grader's (:mod:`mechintro.grading`) with the rule that decided each,
and a judge's stored verdicts (``mechintro grade``) with its reply. In a terminal ``print()``
gives the same as plain text, with the injected tokens between ``⟦ ⟧``.

The prompt is decoded with the run's tokenizer, found from the run's ``model`` attribute (an
offline model's cached conversion, a local checkpoint, or a Hub id already in the local Hugging
Face cache); pass ``tokenizer=`` (or ``model=``) to choose it. Without one the token ids are shown.
"""

from __future__ import annotations

import html
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import xarray as xr

from mechintro.tables import html_table

log = logging.getLogger(__name__)

# inline style so the HTML stands alone (no CSS file, no network); used by the run report too
STYLE = (
    ".mi-t{font-family:system-ui,sans-serif;font-size:13px;border:1px solid #ccc;"
    "border-radius:6px;padding:8px 10px;margin:6px 0;}"
    ".mi-t h4{margin:0 0 6px 0;font-size:14px}.mi-t .meta{color:#444;margin-bottom:6px}"
    ".mi-t pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:6px;"
    "border-radius:4px;margin:4px 0;font-size:12px}"
    ".mi-t mark{background:#ffd54f;padding:0 1px;border-radius:2px}"
    ".mi-t .read{text-decoration:underline dotted #1565c0}"
    ".mi-t table{border-collapse:collapse;margin:4px 0}"
    ".mi-t td,.mi-t th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}"
    ".mi-t .yes{color:#1b5e20;font-weight:600}.mi-t .no{color:#b71c1c;font-weight:600}"
)


@cache
def _tokenizer_for(model_name: str) -> Any:
    """The tokenizer of a run's model, from local files only; ``None`` if none is found."""
    from pathlib import Path

    from mechintro.progress import quiet_third_party

    try:
        with quiet_third_party():
            from transformers import AutoTokenizer

        from mechintro.models import OFFLINE_MODELS, _converted_dir

        if model_name in OFFLINE_MODELS:
            folder = _converted_dir(OFFLINE_MODELS[model_name])
            return AutoTokenizer.from_pretrained(folder) if folder.is_dir() else None
        if Path(model_name).is_dir():
            return AutoTokenizer.from_pretrained(model_name)
        return AutoTokenizer.from_pretrained(model_name, local_files_only=True)
    except Exception as exc:  # any loader failure: show token ids instead
        log.info("no tokenizer for %s (%s); showing token ids", model_name, exc)
        return None


@dataclass(frozen=True)
class Verdict:
    """One criterion's verdict for a trial and what decided it."""

    criterion: str
    answer: str  # "YES" / "NO" / "ungraded"
    decided_by: str


def _marked(pieces: Sequence[str], on: Sequence[bool], open_: str, close: str) -> list[str]:
    """``pieces`` with each run of those ``on`` set between ``open_`` and ``close``."""
    out, inside = [], False
    for piece, flag in zip(pieces, on, strict=True):
        if flag and not inside:
            out.append(open_)
        if not flag and inside:
            out.append(close)
        inside = flag
        out.append(piece)
    if inside:
        out.append(close)
    return out


@dataclass(frozen=True)
class Trial:
    """Everything a transcript shows for one trial (plain data; rendering is separate)."""

    index: int
    labels: dict[str, str]
    tokens: list[str]
    injected: list[bool]
    read: list[bool]
    response: str | None = None
    answer: dict[str, float] | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    response_injected: int | None = None
    """how many leading characters of ``response`` come from generated tokens the vector was
    added on (every generated token but the last, which is never fed back); ``None``: none, or
    not known (no tokenizer)"""

    def text(self) -> str:
        lines = [f"trial {self.index}  " + "  ".join(f"{k}={v}" for k, v in self.labels.items())]
        prompt = _marked(self.tokens, self.injected, "⟦", "⟧")
        head = "⟦injected window⟧" if any(self.injected) else "nothing injected"
        lines += [f"--- prompt ({head}) ---", "".join(prompt)]
        if self.response is not None:
            k = self.response_injected
            if k:
                lines += [
                    "--- response (⟦injected⟧) ---",
                    f"⟦{self.response[:k]}⟧{self.response[k:]}",
                ]
            else:
                lines += ["--- response ---", self.response]
        if self.answer is not None:
            lines += [
                "--- next token ---",
                "  ".join(f"{k} {v:.3g}" for k, v in self.answer.items()),
            ]
        if self.verdicts:
            lines.append("--- verdicts ---")
            lines += [f"{v.criterion}: {v.answer}  ({v.decided_by})" for v in self.verdicts]
        return "\n".join(lines)

    def html(self) -> str:
        pieces = [
            f"<span class='read'>{html.escape(tok)}</span>" if rd else html.escape(tok)
            for tok, rd in zip(self.tokens, self.read, strict=True)
        ]
        parts = _marked(pieces, self.injected, "<mark title='injected'>", "</mark>")
        meta = " · ".join(
            f"<b>{html.escape(k)}</b> {html.escape(v)}" for k, v in self.labels.items()
        )
        out = [
            f"<div class='mi-t' data-trial='{self.index}'><h4>trial {self.index}</h4>"
            f"<div class='meta'>{meta}</div>",
            (
                "<div>prompt (<mark>injected window</mark>):</div>"
                if any(self.injected)
                else "<div>prompt (nothing injected):</div>"
            )
            + "<pre>"
            + "".join(parts)
            + "</pre>",
        ]
        if self.response is not None:
            k = self.response_injected
            if k:
                out.append(
                    "<div>response (<mark>injected tokens</mark>):</div><pre>"
                    f"<mark title='injected'>{html.escape(self.response[:k])}</mark>"
                    f"{html.escape(self.response[k:])}</pre>"
                )
            else:
                out.append(f"<div>response:</div><pre>{html.escape(self.response)}</pre>")
        if self.answer is not None:
            out.append(
                "<div>next token:</div><table><tr>"
                + "".join(f"<th>{html.escape(k)}</th>" for k in self.answer)
                + "</tr><tr>"
                + "".join(f"<td>{v:.3g}</td>" for v in self.answer.values())
                + "</tr></table>"
            )
        if self.verdicts:
            rows = "".join(
                f"<tr><td>{html.escape(v.criterion)}</td>"
                f"<td class='{'yes' if v.answer == 'YES' else 'no'}'>{html.escape(v.answer)}</td>"
                f"<td>{html.escape(v.decided_by)}</td></tr>"
                for v in self.verdicts
            )
            out.append(
                "<div>verdicts:</div><table><tr><th>criterion</th><th>verdict</th>"
                f"<th>decided by</th></tr>{rows}</table>"
            )
        out.append("</div>")
        return "".join(out)


class Transcripts:
    """Trials rendered for reading: HTML in Jupyter, plain text in ``print`` / a terminal."""

    def __init__(self, trials: Sequence[Trial]) -> None:
        self.trials = list(trials)

    def __len__(self) -> int:
        return len(self.trials)

    def __str__(self) -> str:
        return "\n\n".join(t.text() for t in self.trials)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return f"<style>{STYLE}</style>" + "".join(t.html() for t in self.trials)


_SKIP_COORDS = {
    "committed",
    "digest",
    "answer_label",
    "answer_id",
    "concept",
    "condition",
    "strength",
    "inject_layer",
    "inject_layer_end",
    "generated_injection",
}


def _labels(ds: xr.Dataset, i: int) -> dict[str, str]:
    def get(name: str) -> Any:
        return (
            ds[name].values[i].item() if hasattr(ds[name].values[i], "item") else ds[name].values[i]
        )

    labels = {"experiment": ds.attrs.get("experiment", "?"), "model": ds.attrs.get("model", "?")}
    labels["concept"] = str(get("concept")) or "(none)"
    labels["condition"] = str(get("condition"))
    layer, end = (
        int(get("inject_layer")),
        int(get("inject_layer_end")) if "inject_layer_end" in ds else int(get("inject_layer")) + 1,
    )
    where = "—" if layer < 0 else (str(layer) if end <= layer + 1 else f"{layer}–{end - 1}")
    strength = f"{float(get('strength')):g}"
    if nothing_injected(ds, i):
        # a control carries its cell's layer and strength (schema), but nothing was added
        labels["layer"] = labels["strength"] = "—"
        labels["injected"] = "nothing" + (
            f" (control trial of the layer {where}, strength {strength} cell)" if layer >= 0 else ""
        )
    else:
        labels["layer"], labels["strength"] = where, strength
        if "generated_injection" in ds and bool(get("generated_injection")):
            labels["injected on"] = "prompt and generated tokens"
    for name, coord in ds.coords.items():
        if name not in _SKIP_COORDS and coord.dims == ("trial",) and name != "trial":
            value = " ".join(str(coord.values[i]).split())
            labels[name] = value if len(value) <= 60 else value[:57] + "…"
    return labels


# conditions whose trials add nothing (with an all-false inject_mask, so a patched trial of
# another condition is never called uninjected)
UNINJECTED_CONDITIONS = frozenset({"control", "unsteered", "none"})


def nothing_injected(ds: xr.Dataset, i: int) -> bool:
    """Whether trial ``i`` (a position along ``ds.trial``) had nothing added: an uninjected
    condition, no injected prompt token and no injection on generated tokens."""
    if str(ds["condition"].values[i]) not in UNINJECTED_CONDITIONS:
        return False
    if "inject_mask" in ds and bool(np.asarray(ds["inject_mask"].values[i]).any()):
        return False
    return not ("generated_injection" in ds and bool(ds["generated_injection"].values[i]))


def injected_response_chars(ds: xr.Dataset, i: int, tokenizer: Any) -> int | None:
    """How many leading characters of trial ``i``'s response were produced by generated tokens
    that the vector was added on: with ``generated_injection``, each generated token gets the
    vector when it is fed back, i.e. every one but the last (the runner decodes the response
    with ``skip_special_tokens``, so an end-of-sequence token adds no text). ``None`` where
    nothing generated was injected, or the split is not known (no tokenizer, or its decoding of
    the tokens does not start the stored response)."""
    if "response_ids" not in ds or "generated_injection" not in ds:
        return None
    if not bool(ds["generated_injection"].values[i]) or tokenizer is None:
        return None
    ids = [int(t) for t in np.asarray(ds["response_ids"].values[i]) if t >= 0]
    head = tokenizer.decode(ids[:-1], skip_special_tokens=True) if len(ids) > 1 else ""
    response = str(ds["response"].values[i])
    return len(head) if head and response.startswith(head) else None


def _rule_verdicts(response: str, word: str, question: str) -> list[Verdict]:
    """The offline grader's four criteria, each with the rule that decided it (``Grades.why``):
    the grader's own record, so the evidence shown is the one its verdict rests on."""
    from mechintro import grading

    kind = "detect" if "detect" in question.lower() or not question else "open"
    g = grading.grade(response, word, question_kind=kind)
    yn = {True: "YES", False: "NO"}
    criteria = ("coherence", "affirmative", "thinking_about_word", "affirmative_identification")
    return [
        Verdict(name, yn[getattr(g, name)], f"offline rule: {g.why(name)}") for name in criteria
    ]


def trial(ds: xr.Dataset, i: int, *, tokenizer: Any = None) -> Trial:
    """The transcript data of trial ``i`` (a position along ``ds.trial``)."""
    tok = tokenizer if tokenizer is not None else _tokenizer_for(str(ds.attrs.get("model", "")))
    mask = np.asarray(ds["attention_mask"].values[i], dtype=bool)
    ids = np.asarray(ds["input_ids"].values[i])[mask]
    injected = np.asarray(ds["inject_mask"].values[i], dtype=bool)[mask].tolist()
    read = (
        np.asarray(ds["read_mask"].values[i], dtype=bool)[mask].tolist()
        if "read_mask" in ds
        else [False] * len(ids)
    )
    tokens = (
        [tok.decode([int(t)]) for t in ids] if tok is not None else [f"[{int(t)}]" for t in ids]
    )
    response = answer = injected_chars = None
    verdicts: list[Verdict] = []
    if "response" in ds:
        response = str(ds["response"].values[i])
        injected_chars = injected_response_chars(ds, i, tok)
        question = str(ds["question"].values[i]) if "question" in ds.coords else ""
        experiment = ds.attrs.get("experiment", "")
        if experiment == "prefill":
            from mechintro import grading

            said = grading.apology(response)
            verdicts = [
                Verdict(
                    "apology",
                    {True: "YES", False: "NO", None: "ungraded"}[said],
                    "offline rules: accident/apology words vs "
                    "intent words (mechintro.grading.apology)",
                )
            ]
        elif experiment == "injected-thoughts":
            verdicts = _rule_verdicts(response, str(ds["concept"].values[i]).lower(), question)
        for name in ds.data_vars:
            if (
                name.startswith("grade_")
                and not name.endswith("_reply")
                and str(ds[name].values[i])
            ):
                criterion = name.removeprefix("grade_")
                reply = str(ds[f"{name}_reply"].values[i]) if f"{name}_reply" in ds else ""
                judge = ds.attrs.get(f"judge_{criterion}", "judge")
                verdicts.append(
                    Verdict(
                        criterion, str(ds[name].values[i]), f"judge {judge}: {reply.strip()[:300]}"
                    )
                )
    if "answer_logprobs" in ds:
        lp = np.asarray(ds["answer_logprobs"].values[i], dtype=np.float64)
        labels = np.asarray(ds["answer_label"].values)
        p_yes, p_no = (
            float(np.exp(lp[labels == "yes"]).sum()),
            float(np.exp(lp[labels == "no"]).sum()),
        )
        answer = {
            "P(yes)": p_yes,
            "P(no)": p_no,
            "P(yes)/(P(yes)+P(no))": p_yes / (p_yes + p_no) if p_yes + p_no > 0 else float("nan"),
        }
    return Trial(
        index=int(ds["trial"].values[i]) if "trial" in ds.coords else i,
        labels=_labels(ds, i),
        tokens=tokens,
        injected=injected,
        read=read,
        response=response,
        answer=answer,
        verdicts=verdicts,
        response_injected=injected_chars,
    )


TRIAL_VARIABLES = (
    "input_ids",
    "attention_mask",
    "inject_mask",
    "read_mask",
    "response",
    "response_ids",
    "answer_logprobs",
)
"""The per-trial variables a transcript (and the run report's page) reads, where a run has them."""


def show(
    ds: xr.Dataset,
    trials: int | Sequence[int] | None = None,
    *,
    tokenizer: Any = None,
    model: Any = None,
    limit: int = 20,
    display: bool = True,
) -> Transcripts | None:
    """Show the transcripts of ``trials`` (positions along ``ds.trial``; default: every trial of
    ``ds``, up to ``limit``) where it is called, as ``IPython.display.display`` does: HTML in
    Jupyter, text on stdout in a script or a terminal; returns None (so a notebook cell does not
    show them twice). ``display=False`` shows nothing and returns the :class:`Transcripts`
    instead (HTML in Jupyter as a cell's value, text with ``str()``).

    Example::

        mi.show(ds, 3)                                            # one trial
        mi.show(ds.where(ds.condition == "injected", drop=True), limit=5)
        text = str(mi.show(ds, 3, display=False))
    """
    if "input_ids" not in ds or "inject_mask" not in ds:
        from mechintro.errors import MechintroError

        raise MechintroError(
            "mi.show needs a run dataset (from mi.open_run) with input_ids and inject_mask"
        )
    if model is not None and tokenizer is None:
        tokenizer = model.tokenizer
    n = ds.sizes["trial"]
    if trials is None:
        picked = list(range(min(n, limit)))
        if n > limit:
            log.info("showing the first %d of %d trials (pass limit= or select trials)", limit, n)
    else:
        picked = [int(trials)] if np.ndim(trials) == 0 else [int(t) for t in trials]
    for t in picked:
        if not 0 <= t < n:
            from mechintro.errors import MechintroError

            raise MechintroError(
                f"trial {t} is out of range: this dataset has {n} trials (0..{n - 1})"
            )
    sub = ds.isel(trial=picked)
    keep = [v for v in TRIAL_VARIABLES if v in sub] + [
        v for v in sub.data_vars if str(v).startswith("grade_")
    ]
    sub = sub[keep].compute()
    sub.attrs = dict(ds.attrs)
    shown = Transcripts([trial(sub, k, tokenizer=tokenizer) for k in range(len(picked))])
    if not display:
        return shown
    _display(shown)
    return None


def _display(shown: Transcripts) -> None:
    """``IPython.display.display(shown)`` in an IPython shell or kernel (HTML in Jupyter), the
    text on stdout elsewhere. The one place the library writes to stdout: :func:`show` is a
    display function the user calls to see a transcript, like ``print`` or ``plt.show``; all
    other output of the library goes through logging."""
    try:
        from IPython import get_ipython
    except ImportError:  # IPython is not a dependency: a plain script or REPL
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        from IPython.display import display

        display(shown)
    else:
        sys.stdout.write(f"{shown}\n")
        sys.stdout.flush()


def config_html(config: object) -> str:
    """An experiment config as an HTML table (for ``_repr_html_``)."""
    import dataclasses

    rows = {
        f.name: json.dumps(getattr(config, f.name), default=str) for f in dataclasses.fields(config)
    }
    return html_table(rows, caption=type(config).__qualname__)
