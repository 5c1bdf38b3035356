"""A one-page run report: one self-contained HTML file per run.

``mechintro report RUN --out report.html`` (Python: :func:`write_report`) writes a single file that
opens in any browser with no network access — no CDN, no external script, style sheet or font;
figures embedded as base64 PNG — holding:

1. the run's provenance (model, weights hash, mechintro version, git commit, creation time, seed,
   the experiment's full config);
2. the experiment's summary table with its 95% intervals (the experiment's own
   ``format_summary``);
3. the experiment's figures (the same :mod:`mechintro.plotting` functions the notebooks call);
4. every committed trial in a filterable list (concept, layer, strength, condition, the readout
   or verdict); clicking a row opens its transcript (:mod:`mechintro.transcripts`): the prompt with
   the injected window highlighted, the full response or next-token probabilities, the verdicts.

Prompts repeat across trials, so each distinct prompt is stored once and the transcript is built
in the browser from it; the report of ``make demo``'s run stays well under 5 MB.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
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


def _readout(ds: xr.Dataset, name: str) -> tuple[str, list[str]]:
    """The per-trial column shown in the list: its header and one string per trial."""
    n = ds.sizes["trial"]
    if "answer_logprobs" in ds:
        from mechintro.readouts import yes_no

        p = yes_no(ds).p_yes_norm.values
        return "P(yes)/(P(yes)+P(no))", [f"{x:.3f}" for x in p]
    if "response" in ds:
        from mechintro import grading

        responses = [str(r) for r in ds.response.values]
        if name == "prefill":
            return "apology (offline grader)", [
                {True: "apology", False: "intended", None: "ungraded"}[grading.apology(r)]
                for r in responses
            ]
        if name == "injected-thoughts":
            out = []
            for r, c in zip(responses, ds.concept.values, strict=True):
                g = grading.grade(r, str(c).lower())
                out.append(
                    "detected"
                    if g.detected
                    else ("claims detection" if g.affirmative else "no detection")
                )
            return "verdict (offline grader)", out
        return "response", [" ".join(r.split())[:60] for r in responses]
    return "readout", [""] * n


class _NoDecode:
    """Stands in for the tokenizer where the prompt is decoded once per distinct prompt instead."""

    @staticmethod
    def decode(ids: list[int]) -> str:
        return ""


def _trial_data(ds: xr.Dataset, name: str, tokenizer: Any) -> dict[str, Any]:
    """Compact per-trial data for the page: each distinct prompt once, as decoded tokens."""
    from mechintro.transcripts import _labels, trial

    keep = [
        v
        for v in (
            "input_ids",
            "attention_mask",
            "inject_mask",
            "read_mask",
            "response",
            "answer_logprobs",
        )
        if v in ds
    ]
    keep += [v for v in ds.data_vars if str(v).startswith("grade_")]
    attrs = dict(ds.attrs)
    ds = ds[keep].compute()
    ds.attrs = attrs

    ids = np.asarray(ds.input_ids.values)
    att = np.asarray(ds.attention_mask.values, dtype=bool)
    inj = np.asarray(ds.inject_mask.values, dtype=bool)
    prompts: dict[bytes, int] = {}
    prompt_tokens: list[list[str]] = []
    header, readout = _readout(ds, name)
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
        rows.append(
            {
                "i": int(ds.trial.values[i]),
                "p": prompts[key],
                "inj": on,
                "labels": _labels(ds, i),
                "readout": readout[i],
                "response": t.response if t else None,
                "answer": t.answer if t else None,
                "verdicts": [[v.criterion, v.answer, v.decided_by] for v in t.verdicts]
                if t
                else [],
            }
        )
    return {"prompts": prompt_tokens, "trials": rows, "readout": header}


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:12px 20px;color:#222}
h1{font-size:20px}h2{font-size:16px;border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:22px}
table.prov td,table.prov th{text-align:left;padding:2px 8px;vertical-align:top;font-size:13px}
pre.summary{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px}
figure{margin:10px 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:13px;color:#444}
#filters{display:flex;gap:10px;flex-wrap:wrap;align-items:center;margin:8px 0;font-size:13px}
#trials{border-collapse:collapse;width:100%;font-size:13px}
#trials th,#trials td{border-bottom:1px solid #eee;padding:3px 6px;text-align:left}
#trials tbody tr{cursor:pointer}#trials tbody tr:hover{background:#f0f6ff}
#trials tr.open{background:#e3f2fd}
#count{color:#444}
__TSTYLE__
</style></head><body>
<h1>__TITLE__</h1>
<h2>Provenance</h2>
__PROV__
<h2>Summary (95% intervals)</h2>
<pre class="summary">__SUMMARY__</pre>
<h2>Figures</h2>
__FIGURES__
<h2>Trials</h2>
<div id="filters">
 <label>search <input id="q" type="search" placeholder="concept, response…"></label>
 __SELECTS__
 <span id="count"></span>
</div>
<table id="trials"><thead><tr>
<th>trial</th><th>concept</th><th>condition</th><th>layer</th><th>strength</th><th>__READOUT__</th>
</tr></thead><tbody></tbody></table>
<div id="transcript"></div>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const esc = s => String(s).replace(
  /[&<>"']/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
const body = document.querySelector("#trials tbody");
const FIELDS = ["concept", "condition", "layer", "strength"];
function row(t) {
  const tr = document.createElement("tr");
  tr.dataset.trial = t.i;
  tr.dataset.search = (t.labels.concept + " " + t.labels.condition + " " + t.readout + " " +
    (t.response || "")).toLowerCase();
  for (const f of FIELDS) tr.dataset[f] = t.labels[f];
  tr.innerHTML = `<td>${t.i}</td><td>${esc(t.labels.concept)}</td>` +
    `<td>${esc(t.labels.condition)}</td><td>${esc(t.labels.layer)}</td>` +
    `<td>${esc(t.labels.strength)}</td><td>${esc(t.readout)}</td>`;
  tr.addEventListener("click", () => open(t, tr));
  return tr;
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
  const meta = Object.entries(t.labels).map(([k, v]) => `<b>${esc(k)}</b> ${esc(v)}`).join(" · ");
  let h = `<div class="mi-t" data-trial="${t.i}"><h4>trial ${t.i}</h4>` +
          `<div class="meta">${meta}</div>` +
          `<div>prompt (<mark>injected window</mark>):</div><pre>${out}</pre>`;
  if (t.response !== null) {
    h += `<div>response:</div><pre class="response">${esc(t.response)}</pre>`;
  }
  if (t.answer) {
    h += "<div>next token:</div><table><tr>" +
      Object.keys(t.answer).map(k => `<th>${esc(k)}</th>`).join("") + "</tr><tr>" +
      Object.values(t.answer).map(v => `<td>${Number(v).toPrecision(3)}</td>`).join("") +
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
function open(t, tr) {
  document.querySelectorAll("#trials tr.open").forEach(r => r.classList.remove("open"));
  const old = document.getElementById("inline-transcript");
  if (old) old.remove();
  tr.classList.add("open");
  const holder = document.createElement("tr");
  holder.id = "inline-transcript";
  holder.innerHTML = `<td colspan="6">${transcript(t)}</td>`;
  tr.after(holder);
}
function filter() {
  const q = document.getElementById("q").value.trim().toLowerCase();
  const want = {};
  for (const f of FIELDS) { const s = document.getElementById("f-" + f); if (s) want[f] = s.value; }
  let shown = 0;
  for (const tr of body.querySelectorAll("tr[data-trial]")) {
    const ok = (!q || tr.dataset.search.includes(q)) &&
      FIELDS.every(f => !want[f] || tr.dataset[f] === want[f]);
    tr.style.display = ok ? "" : "none";
    if (ok) shown++;
  }
  const open_ = document.getElementById("inline-transcript");
  if (open_ && open_.previousSibling && open_.previousSibling.style.display === "none") {
    open_.remove();
  }
  document.getElementById("count").textContent = `${shown} of ${DATA.trials.length} trials shown`;
}
DATA.trials.forEach(t => body.appendChild(row(t)));
document.getElementById("q").addEventListener("input", filter);
for (const f of FIELDS) {
  const s = document.getElementById("f-" + f);
  if (s) s.addEventListener("change", filter);
}
filter();
</script>
</body></html>
"""


def _select(field: str, values: list[str]) -> str:
    options = "".join(
        f"<option value='{html.escape(v, quote=True)}'>{html.escape(v)}</option>" for v in values
    )
    return (
        f"<label>{field} <select id='f-{field}'><option value=''>all</option>"
        f"{options}</select></label>"
    )


def build_report(ds: xr.Dataset, *, tokenizer: Any = None, progress: Progress = None) -> str:
    """The report page of an opened run (``mi.open_run``) as one HTML string."""
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
    config = ds.attrs.get("config", "{}")
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
    selects = "".join(
        _select(f, sorted({t["labels"][f] for t in data["trials"]}, key=_sort_key))
        for f in ("concept", "condition", "layer", "strength")
    )
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    page = _PAGE
    for key, value in {
        "__TITLE__": html.escape(title),
        "__TSTYLE__": STYLE,
        "__PROV__": prov_html,
        "__SUMMARY__": html.escape(summary_text),
        "__FIGURES__": "".join(figures) or "<p>(no figures for this experiment)</p>",
        "__SELECTS__": selects,
        "__READOUT__": html.escape(data["readout"]),
        "__DATA__": payload,
    }.items():
        page = page.replace(key, value)
    return page


def _sort_key(v: str) -> tuple[int, float, str]:
    try:
        return (0, float(v), "")
    except ValueError:
        return (1, 0.0, v)


def write_report(run: str | Path, out: str | Path, *, progress: Progress = None) -> Path:
    """Write the report of the run at ``run`` to ``out`` (written whole, then renamed into place).
    Returns ``out``."""
    from mechintro.runs import open_run

    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise MechintroError(f"--out {out} should end in .html (the report is one HTML file)")
    if not out.parent.exists():
        raise MechintroError(
            f"the folder {out.parent} does not exist: create it or choose another --out"
        )
    ds = open_run(run)
    if "input_ids" not in ds or "inject_mask" not in ds:
        raise MechintroError(
            f"{run} is not a trial run (no input_ids / "
            "inject_mask): reports are for `mechintro run` outputs"
        )
    page = build_report(ds.drop_vars([v for v in ("resid",) if v in ds]), progress=progress)
    scratch = out.with_name(out.name + ".partial")
    scratch.write_text(page, encoding="utf-8")
    scratch.replace(out)
    return out
