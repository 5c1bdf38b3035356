"""A one-page run report: one self-contained HTML file per run, and an index of a folder of runs.

``mechintro report RUN --out report.html`` (Python: :func:`write_report`) writes a single file that
opens in any browser with no network access — no CDN, no external script, style sheet or font;
figures embedded as base64 PNG — holding:

1. the run's provenance (model, weights hash, mechintro version, git commit, creation time, seed,
   the experiment's full config);
2. the experiment's summary table (its own ``format_summary``) and, listed under it, what each
   interval is as the experiment states it (not every bracket is a 95% CI);
3. the experiment's figures (the same :mod:`mechintro.plotting` functions the notebooks call);
4. every committed trial in a filterable list whose columns sort on a click (concept, layer,
   strength, condition, the readout or verdict, and in logit mode P(yes)+P(no) and the shift
   from the uninjected trials with the same prompt); a control shows no layer or strength, only
   its cell's; clicking a row opens its transcript (:mod:`mechintro.transcripts`): the prompt
   with the injected window highlighted, the full response (its injected generated tokens
   highlighted too) or next-token probabilities, the verdicts.

``mechintro report FOLDER --out index.html`` (:func:`write_index`) writes every run's report under
``FOLDER`` into ``index_runs/`` and an index page linking them, one row per run.

Nothing a run holds can become markup or script on the page: every string is escaped for where it
goes (HTML text, attribute, ``<option>``), the trial data sit in a ``<script type=
"application/json">`` with ``<``, ``>``, ``&`` and U+2028/2029 escaped, and the template's
placeholders are filled in one pass (a concept named ``__DATA__`` stays a name).

Prompts repeat across trials, so each distinct prompt is stored once and the transcript is built
in the browser from it; the report of ``make demo``'s run stays well under 5 MB.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
import urllib.parse
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from mechintro.errors import MechintroError
from mechintro.progress import Progress, reporter

log = logging.getLogger(__name__)


def _figures(
    name: str, ds: xr.Dataset, summary: xr.Dataset | None
) -> list[tuple[str, Callable[[], Any]]]:
    """(caption, draw) for the experiment's figures; ``draw`` returns a matplotlib Figure."""
    from mechintro import plotting

    if summary is None:
        return []
    table: dict[str, list[tuple[str, Callable[[], Any]]]] = {
        "detection-logits": [
            (
                "P(yes)/(P(yes)+P(no)) against strength per layer, with the no-injection control",
                lambda: plotting.detection_shift(summary),
            )
        ],
        "injected-thoughts": [
            (
                "detection and false-positive rates by layer",
                lambda: plotting.injected_thoughts_by_layer(summary),
            ),
            (
                "detection and coherence by strength",
                lambda: plotting.injected_thoughts_by_strength(summary),
            ),
        ],
        "thoughts-vs-text": [
            (
                "naming the injected word vs repeating the sentence",
                lambda: plotting.thoughts_vs_text(
                    summary,
                    chance=summary.attrs.get("chance_word"),
                    baseline=(summary.attrs["baseline_word"], summary.attrs["baseline_repeat"])
                    if "baseline_word" in summary.attrs
                    else None,
                ),
            )
        ],
        "prefill": [
            ("apology rate after a prefilled word", lambda: plotting.prefill_apology(summary))
        ],
        "latent-introspection": [
            ("P(yes) unsteered vs steered", lambda: plotting.latent_shifts(summary))
        ],
        "sweep": [("Yes−No shift over layer × strength", lambda: plotting.sweep_heatmaps(summary))],
    }
    return table.get(name, [])


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _finite(x: float) -> float | None:
    """A number for the page's JSON, to 6 significant digits (the page shows 3 decimals; the
    digits beyond would double the page of a large run); ``None`` for NaN and infinities, which
    JSON lacks (``JSON.parse`` rejects them)."""
    x = float(x)
    return float(f"{x:.6g}") if np.isfinite(x) else None


def _readout(ds: xr.Dataset, name: str) -> dict[str, Any]:
    """The per-trial columns shown in the list besides the labels: ``header`` and ``text`` (one
    string per trial) of the readout, ``value`` (its number for sorting, or ``None``), and in
    logit mode ``mass`` (P(yes)+P(no)) and ``shift`` (P(yes)-share minus that of the uninjected
    trials with the same prompt)."""
    n = ds.sizes["trial"]
    out: dict[str, Any] = {"header": "readout", "text": [""] * n, "value": [None] * n}
    if "answer_logprobs" in ds:
        from mechintro.readouts import yes_no

        yn = yes_no(ds)
        p = np.asarray(yn.p_yes_norm.values, dtype=np.float64)
        out |= {
            "header": "P(yes)/(P(yes)+P(no))",
            "text": [f"{x:.3f}" for x in p],
            "value": [_finite(x) for x in p],
            "mass": [_finite(x) for x in np.asarray(yn.mass.values, dtype=np.float64)],
            "shift": [_finite(x) for x in p - _uninjected_baseline(ds, p)],
        }
        return out
    if "response" in ds:
        from mechintro import grading

        responses = [str(r) for r in ds.response.values]
        if name == "prefill":
            out["header"] = "apology (offline grader)"
            out["text"] = [
                {True: "apology", False: "intended", None: "ungraded"}[grading.apology(r)]
                for r in responses
            ]
        elif name == "injected-thoughts":
            out["header"] = "verdict (offline grader)"
            out["text"] = []
            for r, c in zip(responses, ds.concept.values, strict=True):
                g = grading.grade(r, str(c).lower())
                out["text"].append(
                    "detected"
                    if g.detected
                    else ("claims detection" if g.affirmative else "no detection")
                )
        else:
            out["header"] = "response"
            out["text"] = [" ".join(r.split())[:60] for r in responses]
    return out


def _uninjected_baseline(ds: xr.Dataset, value: np.ndarray) -> np.ndarray:
    """Per trial: the mean of ``value`` over the run's uninjected trials (controls, unsteered)
    with the same prompt tokens; NaN where the run has none. In logit mode an uninjected trial
    is deterministic, so this is the value the injection moved the trial from."""
    from mechintro.transcripts import nothing_injected

    ids = np.asarray(ds.input_ids.values)
    att = np.asarray(ds.attention_mask.values, dtype=bool)
    keys = [ids[i][att[i]].tobytes() for i in range(ds.sizes["trial"])]
    sums: dict[bytes, list[float]] = {}
    for i, key in enumerate(keys):
        if nothing_injected(ds, i) and np.isfinite(value[i]):
            sums.setdefault(key, []).append(float(value[i]))
    return np.array([np.mean(sums[k]) if k in sums else np.nan for k in keys])


class _NoDecode:
    """Stands in for the tokenizer where the prompt is decoded once per distinct prompt instead."""

    @staticmethod
    def decode(ids: list[int], **_: Any) -> str:
        return ""


def _cell(ds: xr.Dataset, i: int) -> tuple[str, str]:
    """The (layer, strength) cell of trial ``i`` as the filters match it: a control is filtered
    with its cell, though the list shows it as uninjected."""
    layer = int(ds.inject_layer.values[i])
    return ("—" if layer < 0 else str(layer)), f"{float(ds.strength.values[i]):g}"


def _trial_data(ds: xr.Dataset, name: str, tokenizer: Any) -> dict[str, Any]:
    """Compact per-trial data for the page: each distinct prompt once, as decoded tokens."""
    from mechintro.transcripts import (
        TRIAL_VARIABLES,
        _labels,
        injected_response_chars,
        nothing_injected,
        trial,
    )

    keep = [v for v in TRIAL_VARIABLES if v in ds]
    keep += [v for v in ds.data_vars if str(v).startswith("grade_")]
    attrs = dict(ds.attrs)
    ds = ds[keep].compute()
    ds.attrs = attrs

    ids = np.asarray(ds.input_ids.values)
    att = np.asarray(ds.attention_mask.values, dtype=bool)
    inj = np.asarray(ds.inject_mask.values, dtype=bool)
    prompts: dict[bytes, int] = {}
    prompt_tokens: list[list[str]] = []
    readout = _readout(ds, name)
    rows = []
    decode_cache: dict[int, str] = {}

    def decode(t: int) -> str:
        if t not in decode_cache:
            decode_cache[t] = tokenizer.decode([t]) if tokenizer is not None else f"[{t}]"
        return decode_cache[t]

    for i in range(ds.sizes["trial"]):
        real = ids[i][att[i]]
        key = real.tobytes()
        if key not in prompts:
            prompts[key] = len(prompt_tokens)
            prompt_tokens.append([decode(int(t)) for t in real])
        on = np.flatnonzero(inj[i][att[i]]).tolist()
        t = (
            trial(ds, i, tokenizer=_NoDecode)
            if ("response" in ds or "answer_logprobs" in ds)
            else None
        )
        labels = _labels(ds, i)
        layer, strength = _cell(ds, i)
        control = nothing_injected(ds, i)
        row = {
            "i": int(ds.trial.values[i]),
            "p": prompts[key],
            "inj": on,
            "labels": labels,
            # the list shows a control's layer and strength as "— (cell 15)", filters and sorts
            # it with its cell
            "layer": layer,
            "strength": strength,
            "ctl": control,
            "readout": readout["text"][i],
            "value": readout["value"][i],
            "response": t.response if t else None,
            "rinj": injected_response_chars(ds, i, tokenizer) if t and t.response else None,
            "answer": {k: _finite(v) for k, v in t.answer.items()} if t and t.answer else None,
            "verdicts": [[v.criterion, v.answer, v.decided_by] for v in t.verdicts] if t else [],
        }
        if "mass" in readout:
            row["mass"], row["shift"] = readout["mass"][i], readout["shift"][i]
        rows.append(row)
    filters = {
        f: sorted({str(r["labels"][f] if f in r["labels"] else r[f]) for r in rows}, key=_sort_key)
        for f in ("concept", "condition", "layer", "strength")
    }
    # labels every trial shares (experiment, model, often the question) are stored once
    order = list(dict.fromkeys(k for r in rows for k in r["labels"]))
    common = {
        k: rows[0]["labels"][k]
        for k in order
        if all(r["labels"].get(k, None) == rows[0]["labels"].get(k) for r in rows)
    }
    for r in rows:
        r["labels"] = {k: v for k, v in r["labels"].items() if k not in common}
    return {
        "prompts": prompt_tokens,
        "trials": rows,
        "labels": {"order": order, "common": common},
        "readout": readout["header"],
        "logit": "mass" in readout,
        "filters": filters,
    }


def _script_json(data: object) -> str:
    """``data`` as JSON that is safe inside ``<script type="application/json">``: ``<``, ``>``
    and ``&`` as ``\\u`` escapes (so no ``</script>``, ``<!--`` or ``<script`` can end or
    reopen the element), and U+2028/U+2029, which some JavaScript parsers take for line ends.
    JSON syntax uses none of these characters, so they can only occur inside strings, where
    the escape stands for the same character."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    for char, escape in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escape)
    return text


def _fill(template: str, values: dict[str, str]) -> str:
    """Put ``values`` into the ``__NAME__`` placeholders of ``template`` in one pass: what a
    value holds is never searched for placeholders (a concept named ``__DATA__`` stays text).
    Every placeholder must have a value and every value a placeholder."""
    used: set[str] = set()

    def one(match: re.Match[str]) -> str:
        used.add(match.group(1))
        return values[match.group(1)]

    page = re.sub(r"__([A-Z]+)__", one, template)
    if used != set(values):
        raise AssertionError(f"template placeholders {sorted(used)} != values {sorted(values)}")
    return page


_NOTE = re.compile(r"^\s*(intervals?|readout)\b", re.IGNORECASE)  # not a headline
_INTERVALS = re.compile(r"^\s*intervals?:", re.IGNORECASE)  # shown as "What each interval is"


def _summary_html(text: str, interval_note: str | None) -> str:
    """The experiment's ``format_summary`` text: its tables as ``<pre>`` (columns stay
    aligned, scroll sideways on a narrow window) and every other line as wrapped text, so no
    note is cut at the right edge; then what each interval is, as the experiment states it."""
    lines = text.splitlines()
    table = [False] * len(lines)
    for k, line in enumerate(lines):
        if len(line) >= 10 and set(line) == {"-"} and k > 0:  # mechintro.tables.table's rule
            table[k - 1] = table[k] = True
            j = k + 1
            while j < len(lines) and len(lines[j]) == len(line):
                table[j] = True
                j += 1
    parts: list[str] = []
    k = 0
    while k < len(lines):
        j = k
        while j < len(lines) and table[j] == table[k]:
            j += 1
        block = lines[k:j]
        if table[k]:
            parts.append(f"<pre class='summary'>{html.escape(chr(10).join(block))}</pre>")
        else:
            parts += [
                f"<p class='note'>{html.escape(line)}</p>"
                for line in block
                if line.strip() and not (interval_note and _INTERVALS.match(line))
            ]
        k = j
    if interval_note:
        items = "".join(
            f"<li>{html.escape(part.strip())}</li>"
            for part in interval_note.split("; ")
            if part.strip()
        )
        warn = (
            "<p class='warn'>Some brackets are <b>not</b> 95% confidence intervals (see "
            "below); a column headed “95% CI” holds whatever this list names for it.</p>"
            if "not a 95%" in interval_note or "**not**" in interval_note
            else ""
        )
        parts.append(f"<h3>What each interval is</h3>{warn}<ul class='intervals'>{items}</ul>")
    return "".join(parts)


def _interval_note(summary: xr.Dataset | None, text: str) -> str | None:
    """What the summary's brackets are, as the experiment states it: its ``interval``
    attribute, or its summary's own ``interval(s):`` line."""
    if summary is not None and isinstance(summary.attrs.get("interval"), str):
        return summary.attrs["interval"]
    for line in text.splitlines():
        m = re.match(r"^\s*intervals?:\s*(.*)$", line, re.IGNORECASE)
        if m:
            return m.group(1)
    return None


# the head and first style rules of both pages (a run's report and the index)
_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:12px 20px;color:#222}
h1{font-size:20px;overflow-wrap:anywhere}
"""

_PAGE = (
    _HEAD
    + """h2{font-size:16px;border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:22px}
h3{font-size:14px;margin:10px 0 4px 0}
table.prov td,table.prov th{text-align:left;padding:2px 8px;vertical-align:top;font-size:13px}
table.prov code{white-space:pre-wrap;overflow-wrap:anywhere}
pre.summary{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px;margin:6px 0}
p.note{font-size:13px;margin:3px 0;overflow-wrap:anywhere}
p.warn{font-size:13px;margin:3px 0;color:#8a4b00}
ul.intervals{font-size:13px;margin:2px 0;padding-left:20px;overflow-wrap:anywhere}
figure{margin:10px 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:13px;color:#444}
#filters{display:flex;gap:10px;flex-wrap:wrap;align-items:center;margin:8px 0;font-size:13px}
#filters select{max-width:16em}
#trials{border-collapse:collapse;width:100%;font-size:13px}
#trials th,#trials td{border-bottom:1px solid #eee;padding:3px 6px;text-align:left}
#trials td[data-col]{overflow-wrap:anywhere}
#trials thead th{cursor:pointer;user-select:none;white-space:nowrap;background:#fafafa}
#trials thead th:hover{background:#eef3fb}
#trials thead th[aria-sort=ascending]::after{content:" \\25B2"}
#trials thead th[aria-sort=descending]::after{content:" \\25BC"}
#trials td.num,#trials th.num{text-align:right;font-variant-numeric:tabular-nums}
#trials tbody tr{cursor:pointer}#trials tbody tr:hover{background:#f0f6ff}
#trials tr.open{background:#e3f2fd}
#count,#shown{color:#444}
__TSTYLE__
</style></head><body>
<h1>__TITLE__</h1>
<h2>Provenance</h2>
__PROV__
<h2>Summary</h2>
__SUMMARY__
<h2>Figures</h2>
__FIGURES__
<h2>Trials</h2>
<div id="filters">
 <label>search <input id="q" type="search" placeholder="concept, response…"></label>
 __SELECTS__
 <span id="count"></span>
</div>
<div id="shown"></div>
<table id="trials"><thead><tr>__HEADERS__</tr></thead><tbody></tbody></table>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const esc = s => String(s).replace(
  /[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
const body = document.querySelector("#trials tbody");
const FIELDS = ["concept", "condition", "layer", "strength"];
// a trial's label: its own, or the one every trial shares (stored once)
const L = (t, k) => (k in t.labels ? t.labels[k] : DATA.labels.common[k]);
const cellText = (t, k) => (t.ctl && t[k] !== "—" ? `— (cell ${t[k]})` : t[k]);
for (const t of DATA.trials) { t.concept = L(t, "concept"); t.condition = L(t, "condition"); }
const num = (v, d) => v === null || v === undefined ? "" : Number(v).toFixed(d);
const signed = v => v === null || v === undefined ? "" : (v >= 0 ? "+" : "") + v.toFixed(3);
// the columns: [key, how a cell is shown, sort key]
const COLUMNS = [
  ["i", t => t.i, t => t.i],
  ["concept", t => esc(t.concept), t => t.concept],
  ["condition", t => esc(t.condition), t => t.condition],
  ["layer", t => esc(cellText(t, "layer")), t => (t.layer === "—" ? null : Number(t.layer))],
  ["strength", t => esc(cellText(t, "strength")), t => Number(t.strength)],
  ["readout", t => esc(t.readout), t => (t.value === null ? t.readout : t.value)],
];
if (DATA.logit) {
  COLUMNS.push(["mass", t => num(t.mass, 3), t => t.mass]);
  COLUMNS.push(["shift", t => signed(t.shift), t => t.shift]);
}
const NUMERIC = new Set(["i", "layer", "strength", "mass", "shift"]);
if (DATA.logit) NUMERIC.add("readout");
function row(t) {
  const tr = document.createElement("tr");
  tr.dataset.trial = t.i;
  tr.dataset.search = (t.concept + " " + t.condition + " " + t.readout + " " +
    (t.response || "")).toLowerCase();
  for (const f of FIELDS) tr.dataset[f] = t[f];
  tr.innerHTML = COLUMNS.map(([k, show]) =>
    `<td data-col="${k}"${NUMERIC.has(k) ? ' class="num"' : ""}>${show(t)}</td>`).join("");
  tr.addEventListener("click", () => open(t, tr));
  t.tr = tr;
  return tr;
}
function marked(text, on, title) {
  return on ? `<mark title="${title}">${esc(text)}</mark>` : esc(text);
}
function transcript(t) {
  const toks = DATA.prompts[t.p], on = new Set(t.inj);
  let out = "", inside = false;
  toks.forEach((tok, k) => {
    if (on.has(k) && !inside) out += "<mark title='injected'>";
    if (!on.has(k) && inside) out += "</mark>";
    inside = on.has(k); out += esc(tok);
  });
  if (inside) out += "</mark>";
  const meta = DATA.labels.order.filter(k => k in t.labels || k in DATA.labels.common)
    .map(k => `<b>${esc(k)}</b> ${esc(L(t, k))}`).join(" · ");
  let h = `<div class="mi-t" data-trial="${Number(t.i)}"><h4>trial ${Number(t.i)}</h4>` +
          `<div class="meta">${meta}</div>` +
          (t.inj.length ? "<div>prompt (<mark>injected window</mark>):</div>"
                        : "<div>prompt (nothing injected):</div>") + `<pre>${out}</pre>`;
  if (t.response !== null) {
    if (t.rinj) {
      h += "<div>response (<mark>injected tokens</mark>: the vector is added on every " +
        "generated token fed back, all but the last):</div>" +
        `<pre class="response">${marked(t.response.slice(0, t.rinj), true, "injected")}` +
        `${esc(t.response.slice(t.rinj))}</pre>`;
    } else {
      h += `<div>response:</div><pre class="response">${esc(t.response)}</pre>`;
    }
  }
  if (t.answer) {
    h += "<div>next token:</div><table><tr>" +
      Object.keys(t.answer).map(k => `<th>${esc(k)}</th>`).join("") + "</tr><tr>" +
      Object.values(t.answer).map(v =>
        `<td>${v === null ? "nan" : Number(v).toPrecision(3)}</td>`).join("") +
      "</tr></table>";
  }
  if (t.verdicts.length) {
    h += "<div>verdicts:</div><table>" +
      "<tr><th>criterion</th><th>verdict</th><th>decided by</th></tr>" +
      t.verdicts.map(([c, a, d]) => `<tr><td>${esc(c)}</td>` +
        `<td class="${a === "YES" ? "yes" : "no"}">${esc(a)}</td>` +
        `<td>${esc(d)}</td></tr>`).join("") +
      "</table>";
  }
  return h + "</div>";
}
function close_() {
  document.querySelectorAll("#trials tr.open").forEach(r => r.classList.remove("open"));
  const old = document.getElementById("inline-transcript");
  if (old) old.remove();
}
function open(t, tr) {
  close_();
  tr.classList.add("open");
  const holder = document.createElement("tr");
  holder.id = "inline-transcript";
  holder.innerHTML = `<td colspan="${COLUMNS.length}">${transcript(t)}</td>`;
  tr.after(holder);
}
let order = {key: "i", dir: 1};
function compare(a, b) {
  const get = COLUMNS.find(c => c[0] === order.key)[2];
  const x = get(a), y = get(b);
  const missing = v => v === null || v === undefined || (typeof v === "number" && isNaN(v));
  if (missing(x) || missing(y)) return missing(x) - missing(y) || a.i - b.i;  // blanks last
  const c = typeof x === "number" && typeof y === "number" ? x - y :
    String(x).localeCompare(String(y), undefined, {numeric: true});
  return c * order.dir || a.i - b.i;
}
function sort(key) {
  order = {key, dir: order.key === key ? -order.dir : 1};
  close_();
  const rows = DATA.trials.slice().sort(compare);
  for (const t of rows) body.appendChild(t.tr);
  for (const th of document.querySelectorAll("#trials thead th")) {
    if (th.dataset.key !== key) th.removeAttribute("aria-sort");
    else th.setAttribute("aria-sort", order.dir > 0 ? "ascending" : "descending");
  }
}
function mean(xs) {
  const v = xs.filter(x => x !== null && x !== undefined);
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
}
function shownSummary(rows) {
  // what the rows shown say, redrawn on every filter (the summary above is the whole run's)
  if (!rows.length) return "";
  if (DATA.logit) {
    const p = mean(rows.map(t => t.value)), m = mean(rows.map(t => t.mass));
    const s = mean(rows.map(t => t.shift));
    return `rows shown: mean ${DATA.readout} ${num(p, 3)}, mean P(yes)+P(no) ${num(m, 3)}` +
      (s === null ? "" : `, mean shift ${signed(s)}`);
  }
  const counts = {};
  for (const t of rows) counts[t.readout] = (counts[t.readout] || 0) + 1;
  const kinds = Object.keys(counts);
  if (kinds.length > 12) return "";
  return "rows shown: " + kinds.sort().map(k => `${k} ${counts[k]}`).join(", ");
}
function filter() {
  const q = document.getElementById("q").value.trim().toLowerCase();
  const want = {};
  for (const f of FIELDS) { const s = document.getElementById("f-" + f); if (s) want[f] = s.value; }
  const shown = [];
  for (const t of DATA.trials) {
    const tr = t.tr;
    const ok = (!q || tr.dataset.search.includes(q)) &&
      FIELDS.every(f => !want[f] || tr.dataset[f] === want[f]);
    tr.style.display = ok ? "" : "none";
    if (ok) shown.push(t);
  }
  const open_ = document.getElementById("inline-transcript");
  if (open_ && open_.previousSibling && open_.previousSibling.style.display === "none") {
    close_();
  }
  document.getElementById("count").textContent =
    `${shown.length} of ${DATA.trials.length} trials shown`;
  document.getElementById("shown").textContent = shownSummary(shown);
}
DATA.trials.forEach(t => body.appendChild(row(t)));
for (const th of document.querySelectorAll("#trials thead th")) {
  th.addEventListener("click", () => sort(th.dataset.key));
}
document.getElementById("q").addEventListener("input", filter);
for (const f of FIELDS) {
  const s = document.getElementById("f-" + f);
  if (s) s.addEventListener("change", filter);
}
filter();
</script>
</body></html>
"""
)


def _select(field: str, values: list[str]) -> str:
    options = "".join(
        f'<option value="{html.escape(v, quote=True)}">{html.escape(v)}</option>' for v in values
    )
    return (
        f'<label>{field} <select id="f-{field}"><option value="">all</option>'
        f"{options}</select></label>"
    )


def _headers(data: dict[str, Any]) -> str:
    cols = [
        ("i", "trial", "trial index"),
        ("concept", "concept", ""),
        ("condition", "condition", ""),
        ("layer", "layer", "injection layer; a control shows its cell's, nothing injected"),
        ("strength", "strength", "injection strength; a control shows its cell's"),
        ("readout", data["readout"], ""),
    ]
    if data["logit"]:
        cols += [
            ("mass", "P(yes)+P(no)", "the probability the next token gives the yes and no forms"),
            (
                "shift",
                "shift",
                "P(yes)/(P(yes)+P(no)) minus that of the run's uninjected trials with the "
                "same prompt",
            ),
        ]
    numeric = {"i", "layer", "strength", "mass", "shift"} | (
        {"readout"} if data["logit"] else set()
    )
    return "".join(
        f'<th data-key="{key}"{" class=num" if key in numeric else ""} '
        f'title="{html.escape((tip + " (click to sort)").strip(), quote=True)}">'
        f"{html.escape(name)}</th>"
        for key, name, tip in cols
    )


def _build(
    ds: xr.Dataset, *, tokenizer: Any = None, progress: Progress = None
) -> tuple[str, xr.Dataset | None, str]:
    """(page, summary dataset or None, summary text) of an opened run."""
    from mechintro.experiments import EXPERIMENTS
    from mechintro.transcripts import STYLE, _tokenizer_for

    name = ds.attrs.get("experiment", "")
    module = EXPERIMENTS.get(name)
    title = f"{name or 'run'} · {ds.attrs.get('model', '?')} · {ds.sizes['trial']} trials"
    prov_keys = (
        "experiment",
        "model",
        "weights_sha256",
        "mode",
        "readouts",
        "seed",
        "batch_size",
        "created",
        "mechintro_version",
        "git_commit",
        "layer_map",
        "vectors_method",
        "complete",
        "schema_version",
    )
    prov = {k: ds.attrs[k] for k in prov_keys if k in ds.attrs}
    prov |= {k: v for k, v in ds.attrs.items() if k.startswith("judge_")}
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(str(v))}</code></td></tr>"
        for k, v in prov.items()
    )
    config = str(ds.attrs.get("config", "{}"))
    try:
        config = json.dumps(json.loads(config), indent=1)
    except ValueError:
        pass
    prov_html = (
        f"<table class='prov'>{rows}</table><details><summary>config</summary>"
        f"<pre class='summary'>{html.escape(config)}</pre></details>"
    )
    tok = tokenizer if tokenizer is not None else _tokenizer_for(str(ds.attrs.get("model", "")))
    with reporter(progress, "report", "step") as report:
        if report:
            report(0, 3)
        summary, summary_text = None, "(no summary for this experiment)"
        if (
            module is not None and name != "intentional-control"
        ):  # its summary needs concept vectors
            try:
                summary = module.summarize(ds)
                summary_text = module.format_summary(summary)
            except (
                Exception
            ) as exc:  # a summary that cannot be made is reported on the page, not fatal
                summary_text = f"(summary not available: {type(exc).__name__}: {exc})"
        if report:
            report(1, 3)
        figures = []
        for caption, draw in _figures(name, ds, summary):
            try:
                figures.append(
                    f"<figure><img alt='{html.escape(caption, quote=True)}' "
                    f"src='data:image/png;base64,{_png(draw())}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
            except Exception as exc:
                figures.append(
                    f"<p>figure '{html.escape(caption)}' not drawn: "
                    f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</p>"
                )
        if report:
            report(2, 3)
        data = _trial_data(ds, name, tok)
        if report:
            report(3, 3)
    selects = "".join(_select(f, values) for f, values in data.pop("filters").items())
    page = _fill(
        _PAGE,
        {
            "TITLE": html.escape(title),
            "TSTYLE": STYLE,
            "PROV": prov_html,
            "SUMMARY": _summary_html(summary_text, _interval_note(summary, summary_text)),
            "FIGURES": "".join(figures) or "<p>(no figures for this experiment)</p>",
            "SELECTS": selects,
            "HEADERS": _headers(data),
            "DATA": _script_json(data),
        },
    )
    return page, summary, summary_text


def build_report(ds: xr.Dataset, *, tokenizer: Any = None, progress: Progress = None) -> str:
    """The report page of an opened run (``mi.open_run``) as one HTML string."""
    return _build(ds, tokenizer=tokenizer, progress=progress)[0]


def _sort_key(v: str) -> tuple[int, float, str]:
    try:
        return (0, float(v), "")
    except ValueError:
        return (1, 0.0, v)


def _check_out(out: Path) -> None:
    if out.suffix.lower() not in (".html", ".htm"):
        raise MechintroError(f"--out {out} should end in .html (the report is one HTML file)")
    if not out.parent.exists():
        raise MechintroError(
            f"the folder {out.parent} does not exist: create it or choose another --out"
        )


def _write(out: Path, page: str) -> None:
    """Write ``page`` to ``out`` whole, then rename it into place."""
    scratch = out.with_name(out.name + ".partial")
    scratch.write_text(page, encoding="utf-8")
    scratch.replace(out)


def _headline(name: str, summary: xr.Dataset | None, text: str) -> str:
    """One line of a run's result for the index: its best cell where the experiment has one
    measure for it, otherwise the first line of its summary below the table."""
    try:
        if summary is not None and name == "injected-thoughts" and "net" in summary:
            net = summary.net.where(np.isfinite(summary.net))
            if int(net.count()) > 0:
                best = net.where(net == net.max(), drop=True)
                layer, strength = int(best.inject_layer[0]), float(best.strength[0])
                cell = summary.sel(inject_layer=layer, strength=strength)
                return (
                    f"best cell layer {layer}, strength {strength:g}: TPR {float(cell.tpr):.3f}, "
                    f"FPR {float(cell.fpr):.3f}, net {float(cell.net):+.3f} (offline grader)"
                )
        if summary is not None and name == "detection-logits" and "p_yes_norm_shift" in summary:
            shift = summary.p_yes_norm_shift
            if int(shift.count()) > 0:
                k = np.unravel_index(int(np.nanargmax(np.abs(shift.values))), shift.shape)
                cell = shift[k]
                return (
                    f"largest P(yes)-share shift {float(cell):+.3f} at layer "
                    f"{int(cell.inject_layer)}, strength {float(cell.strength):g}"
                )
    except (ValueError, KeyError, IndexError):  # a summary of another shape: use its text
        pass
    lines = text.splitlines()
    dash = next((k for k, line in enumerate(lines) if line and set(line) == {"-"}), None)
    rest = lines if dash is None else lines[dash + 1 :]
    width = len(lines[dash]) if dash is not None else -1
    notes = [
        line.strip()
        for line in rest
        if line.strip() and len(line) != width and not _NOTE.match(line)
    ]
    best = [n for n in notes if re.match(r"(largest|best|introspection question ranked)", n)]
    return (best or notes or ["—"])[0][:200]


_INDEX = (
    _HEAD
    + """table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #eee;padding:4px 6px;text-align:left;vertical-align:top;
  white-space:nowrap}
td.wrap{white-space:normal;overflow-wrap:anywhere}
th{background:#fafafa}td.num{text-align:right}
.complete{color:#1b5e20}.resumable{color:#8a4b00}.damaged{color:#b71c1c;font-weight:600}
</style></head><body>
<h1>__TITLE__</h1>
<p>__COUNT__</p>
<table id="runs"><thead><tr><th>run</th><th>experiment</th><th>model</th><th>trials</th>
<th>size</th><th>status</th><th>headline result</th><th>created</th></tr></thead>
<tbody>__ROWS__</tbody></table>
</body></html>
"""
)


def write_index(
    folder: str | Path, out: str | Path, *, progress: Progress = None
) -> tuple[Path, list[dict[str, str]]]:
    """Write every run's report under ``folder`` into ``OUT_runs/`` beside ``out``, and at
    ``out`` one index page linking them, one row per run: experiment, model, trials, size on
    disk, status (``complete``; ``resumable``: interrupted, run the same command again;
    ``damaged``: it cannot be opened or read, with the reason), headline result and creation
    date. Returns ``out`` and the rows."""
    folder, out = Path(folder), Path(out)
    _check_out(out)
    from mechintro.browse import find_runs

    runs = find_runs(folder)
    if not runs:
        raise MechintroError(
            f"{folder} holds no mechintro runs: pass a run, or a folder that contains runs"
        )
    pages = out.with_name(out.stem + "_runs")
    if pages.exists() and not pages.is_dir():
        raise MechintroError(f"{pages} is a file: the reports go into a folder of that name")
    pages.mkdir(exist_ok=True)
    rows: list[dict[str, str]] = []
    with reporter(progress, "index", "run") as report:
        for k, run in enumerate(runs):
            rows.append(_index_row(folder, run, k, pages))
            if report:
                report(k + 1, len(runs))
    _write(out, _index_page(folder, rows))
    return out, rows


def _index_row(folder: Path, run: Path, k: int, pages: Path) -> dict[str, str]:
    """One run's row of the index; its report written into ``pages``."""
    from mechintro.browse import size_on_disk
    from mechintro.runs import open_run

    rel = run.relative_to(folder)
    row = {
        "run": str(rel),
        "experiment": "?",
        "model": "?",
        "trials": "",
        "size": f"{size_on_disk(run) / 1e6:.1f} MB",
        "status": "damaged",
        "headline": "",
        "created": "",
        "href": "",
    }
    try:
        with warnings.catch_warnings():  # zarr's warnings on a damaged store: the row says it
            warnings.simplefilter("ignore")
            ds = open_run(run, committed_only=True)
        row |= {
            "experiment": str(ds.attrs.get("experiment", "?")),
            "model": str(ds.attrs.get("model", "?")),
            "trials": str(ds.sizes["trial"]),
            "created": str(ds.attrs.get("created", "")),
            "status": "complete" if ds.attrs.get("complete") == "true" else "resumable",
        }
        if "input_ids" not in ds or "inject_mask" not in ds:
            row["headline"] = "(not a trial run: no report)"
        else:
            page, summary, text = _build(
                ds.drop_vars([v for v in ("resid",) if v in ds]), progress=False
            )
            name = "--".join(rel.parts).removesuffix(".zarr") or f"run{k}"
            target = pages / f"{k:03d}-{name}.html"
            _write(target, page)
            row["href"] = f"{pages.name}/{target.name}"
            row["headline"] = _headline(row["experiment"], summary, text)
    except Exception as exc:  # one unreadable run is a row of the index, not a failure
        log.warning("%s: %s", run, exc)
        row["status"] = "damaged"
        row["headline"] = f"{type(exc).__name__}: {exc}"[:300]
    return row


def _index_page(folder: Path, rows: list[dict[str, str]]) -> str:
    def cell(row: dict[str, str]) -> str:
        name = html.escape(row["run"])
        link = (
            f'<a href="{html.escape(urllib.parse.quote(row["href"]), quote=True)}">{name}</a>'
            if row["href"]
            else name
        )
        return (
            f"<tr><td class='wrap'>{link}</td><td>{html.escape(row['experiment'])}</td>"
            f"<td>{html.escape(row['model'])}</td><td class='num'>{html.escape(row['trials'])}"
            f"</td><td class='num'>{html.escape(row['size'])}</td>"
            f"<td class='{html.escape(row['status'])}'>{html.escape(row['status'])}</td>"
            f"<td class='wrap'>{html.escape(row['headline'])}</td>"
            f"<td>{html.escape(row['created'][:16].replace('T', ' '))}</td></tr>"
        )

    counts = {s: sum(r["status"] == s for r in rows) for s in ("complete", "resumable", "damaged")}
    return _fill(
        _INDEX,
        {
            "TITLE": html.escape(f"runs under {folder.name or folder}"),
            "COUNT": html.escape(
                f"{len(rows)} runs: "
                + ", ".join(f"{n} {s}" for s, n in counts.items())
                + " (click a run for its report)"
            ),
            "ROWS": "".join(cell(r) for r in rows),
        },
    )


def write_report(run: str | Path, out: str | Path, *, progress: Progress = None) -> Path:
    """Write the report of the run at ``run`` to ``out`` (written whole, then renamed into place).
    ``run`` may also be a folder holding runs: then every run's report is written and ``out``
    is an index page linking them (:func:`write_index`). Returns ``out``."""
    from mechintro.runs import open_run

    out = Path(out)
    _check_out(out)
    if Path(run).is_dir() and not (Path(run) / "zarr.json").exists():  # a folder of runs
        return write_index(run, out, progress=progress)[0]
    ds = open_run(run)
    if "input_ids" not in ds or "inject_mask" not in ds:
        raise MechintroError(
            f"{run} is not a trial run (no input_ids / "
            "inject_mask): reports are for `mechintro run` outputs"
        )
    page = build_report(ds.drop_vars([v for v in ("resid",) if v in ds]), progress=progress)
    _write(out, page)
    return out
