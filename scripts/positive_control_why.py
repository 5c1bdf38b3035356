"""Why Lindsey's injected-thoughts protocol misses the trained detection (issue 33;
docs/positive-control.md): the trained protocol and Lindsey's differ in three things at once —
the question, the vector (CAA vs Lindsey's mean difference) and the injection window (the last
prompt token vs every token from "Trial 1" on, the generated ones included). This script swaps
them one at a time on the same held-out concepts, greedy, at one injected norm, on the
untrained and the trained model, and writes ``analyses/data/positive-control/why.json``.

Conditions (``--concepts`` of Lindsey's 50; every vector scaled to ``--strength`` × the
concept's CAA norm, so only the direction, the prompt or the window changes):

- ``A trained protocol``: their question, CAA vector, last prompt token (the evaluation's cell);
- ``B Lindsey's vector``: as A with Lindsey's vector (the toolkit's, base model, layer L);
- ``C Lindsey's prompt``: Lindsey's conversation ("Trial 1: Do you detect an injected
  thought? …"), CAA vector, last prompt token;
- ``D Lindsey's window``: their question, CAA vector on every token of the question and of the
  answer (Lindsey's window, same norm per token);
- ``E Lindsey's protocol``: Lindsey's prompt, vector and window (the instrument's trial, at the
  matched norm).

And a logit readout of the trained answers (what detection-logits would read if it read the
trained format rather than "yes"/"no"): ``answer_readout``.

    PYTHONPATH=. python scripts/positive_control_why.py /work/pcrun/pc-bal/trained250 \\
        --work /work/pcrun/pc-bal
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mechintro.cli import script_main

ROOT = Path(__file__).resolve().parent.parent
CONDITIONS = (
    "A trained protocol",
    "B Lindsey's vector",
    "C Lindsey's prompt",
    "D Lindsey's window",
    "E Lindsey's protocol",
)


def _specs(model, vectors, lindsey, strength: float) -> dict:
    """Per condition: (prompt ids, mask, generated, {concept: vector})."""
    from mechintro.experiments import injected_thoughts as it
    from mechintro.introspect import data as sdata
    from mechintro.prompts import Window, render_chat, tokenize

    own = tokenize(
        model.tokenizer,
        render_chat(model.tokenizer, [{"role": "user", "content": sdata.EVAL_QUESTION}]),
    )
    li_prompt, li_window = it.prompt_and_window(model, "detect")
    last = tuple([False] * (len(own.input_ids) - 1) + [True])
    li_last = tuple([False] * (len(li_prompt.input_ids) - 1) + [True])
    own_window = Window.from_marker(sdata.EVAL_QUESTION, generated=True).resolve(own)
    caa = {c: strength * v for c, v in vectors.vectors.items()}
    matched = {
        c: lindsey[c] / lindsey[c].norm() * caa[c].norm() for c in lindsey
    }  # Lindsey's direction, the CAA vector's norm
    return {
        CONDITIONS[0]: (own.input_ids, last, False, caa),
        CONDITIONS[1]: (own.input_ids, last, False, matched),
        CONDITIONS[2]: (li_prompt.input_ids, li_last, False, caa),
        CONDITIONS[3]: (own.input_ids, own_window, True, caa),
        CONDITIONS[4]: (li_prompt.input_ids, li_window.resolve(li_prompt), True, matched),
    }


def _run(model, label: str, specs: dict, concepts: list[str], layer: int, tokens: int) -> list:
    from mechintro import engine
    from mechintro.introspect import train as st

    rows = []
    for cond, (ids, mask, generated, vecs) in specs.items():
        chunk = [*concepts, None]  # the last: the greedy unsteered control of this prompt
        edits = [
            []
            if c is None
            else [engine.Add(vector=vecs[c], layers=(layer,), mask=mask, generated=generated)]
            for c in chunk
        ]
        greedy = engine.Generate(tokens, temperature=0.0, seed=0)
        res = engine.run_batch(model, [ids] * len(chunk), edits, [greedy])
        for c, row in zip(chunk, res.generated, strict=True):
            text = model.tokenizer.decode(
                [t for t in row.tolist() if t >= 0], skip_special_tokens=True
            ).strip()
            rows.append(
                {"model": label, "condition": cond, "concept": c or "", "response": text,
                 **st.judge(text, c or "")}
            )  # fmt: skip
    return rows


def _answer_logprob(model, prompt: list[int], answers: list[str], vector, layer: int) -> list:
    """log P(answer | prompt) for each answer (teacher-forced), ``vector`` (or nothing) added
    after block ``layer`` at the last prompt token, as in training."""
    import torch

    from mechintro.arch import get_module

    seqs = [prompt + model.tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
    width = max(len(q) for q in seqs)
    pad = model.tokenizer.pad_token_id or 0
    ids = torch.tensor([q + [pad] * (width - len(q)) for q in seqs])
    block = get_module(model.hf, model.arch.layers)[layer]
    pos = len(prompt) - 1

    def hook(module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        h = h.clone()
        h[:, pos] += vector.to(h.dtype)
        return (h, *output[1:]) if isinstance(output, tuple) else h

    handle = block.register_forward_hook(hook) if vector is not None else None
    try:
        with torch.no_grad():
            logp = torch.log_softmax(model.hf(input_ids=ids).logits.float(), -1)
    finally:
        if handle is not None:
            handle.remove()
    out = []
    for i, q in enumerate(seqs):
        tgt = torch.tensor(q[len(prompt) :])
        out.append(float(logp[i, pos : len(q) - 1].gather(-1, tgt[:, None]).sum()))
    return out


def answer_readout(model, vectors, concepts, strengths, label: str) -> dict:
    """A logit readout of the trained answers instead of "yes"/"no": log Σ P(a positive answer's
    opening, up to the concept) − log Σ P(a negative answer), teacher-forced on their question,
    injected minus the unsteered control, per strength, clustered by concept."""
    import numpy as np

    from mechintro.introspect import data as sdata
    from mechintro.prompts import render_chat, tokenize
    from mechintro.stats import cluster_interval

    prompt = list(
        tokenize(
            model.tokenizer,
            render_chat(model.tokenizer, [{"role": "user", "content": sdata.EVAL_QUESTION}]),
        ).input_ids
    )
    pos = [a.split("{concept}")[0].rstrip() for a in sdata.POSITIVE_ANSWERS]
    answers = pos + list(sdata.NEGATIVE_ANSWERS)

    def score(vector) -> float:
        lp = np.array(_answer_logprob(model, prompt, answers, vector, vectors.layer))
        return float(np.logaddexp.reduce(lp[: len(pos)]) - np.logaddexp.reduce(lp[len(pos) :]))

    control = score(None)
    out = {"model": label, "control": round(control, 4)}
    for s in strengths:
        shift = np.array([score(s * vectors.vectors[c]) - control for c in concepts])
        iv = cluster_interval(shift, np.array(concepts), binary=False)
        out[f"shift_at_{s:g}"] = [round(iv.estimate, 4), round(iv.lo, 4), round(iv.hi, 4)]
        out[f"positive_share_at_{s:g}"] = round(float(np.mean(shift + control > 0)), 4)
    return out


def _summary(rows: list[dict]) -> list[dict]:
    import numpy as np

    from mechintro.stats import rate_interval

    out = []
    for label in ("untrained", "trained"):
        for cond in CONDITIONS:
            sel = [r for r in rows if r["model"] == label and r["condition"] == cond]
            inj = [r for r in sel if r["concept"]]
            ctrl = [r for r in sel if not r["concept"]]
            iv = rate_interval(
                np.array([r["detected"] for r in inj], dtype=float),
                np.array([r["concept"] for r in inj]),
            )
            out.append(
                {
                    "model": label,
                    "condition": cond,
                    "n": len(inj),
                    "detected": [round(iv.estimate, 4), round(iv.lo, 4), round(iv.hi, 4)],
                    "in_format": round(float(np.mean([r["in_format"] for r in inj])), 4),
                    "identified": round(float(np.mean([r["identified"] for r in inj])), 4),
                    "control_detected": bool(ctrl[0]["detected"]),
                    "control_response": ctrl[0]["response"],
                }
            )
    return out


def main() -> int:
    import torch

    from mechintro import models
    from mechintro import vectors as mv
    from mechintro.introspect import data as sdata
    from mechintro.introspect import train as st

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adapter", type=Path, help="the trained model's adapter directory")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "pc-bal")
    p.add_argument("--strength", type=float, default=8.0, help="× the CAA vector (theirs)")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--concepts", type=int, default=50, help="held-out concepts (every k-th)")
    p.add_argument(
        "--readout-concepts", type=int, default=20, help="held-out concepts of the answer readout"
    )
    p.add_argument("--out-data", type=Path, default=ROOT / "analyses" / "data" / "positive-control")
    args = p.parse_args()
    t = time.perf_counter()
    base = models.load_model("smollm2-135m")
    trained, record = st.load(base, args.adapter)
    saved = torch.load(args.work / "vectors.pt", weights_only=True)
    vectors = st.Vectors(saved["layer"], saved["vectors"], saved["resid_norm"])
    all_held = sdata.held_out_concepts()
    held = all_held[:: max(1, len(all_held) // args.concepts)][: args.concepts]
    lv = mv.concept_vectors(base, held, progress=False)
    lindsey = {
        c: torch.from_numpy(lv.sel(concept=c, layer=vectors.layer).values.copy()) for c in held
    }
    specs = _specs(base, vectors, lindsey, args.strength)
    rows, readout = [], []
    for label, m in (("untrained", base), ("trained", trained)):
        rows += _run(m, label, specs, held, vectors.layer, args.max_new_tokens)
        few = all_held[:: max(1, len(all_held) // args.readout_concepts)][: args.readout_concepts]
        readout.append(answer_readout(m, vectors, few, (args.strength,), label))
    result = {
        "adapter_steps": record["steps"],
        "strength": args.strength,
        "ratio": round(vectors.ratio(args.strength), 4),
        "layer": vectors.layer,
        "max_new_tokens": args.max_new_tokens,
        "seconds": round(time.perf_counter() - t, 1),
        "summary": _summary(rows),
        "answer_readout": readout,
        "rows": rows,
    }
    args.out_data.mkdir(parents=True, exist_ok=True)
    (args.out_data / "why.json").write_text(json.dumps(result, indent=0))
    for r in readout:
        print(r)
    for s in result["summary"]:
        print(s["model"], "|", s["condition"], "|", s["detected"], "| format", s["in_format"],
              "| control:", s["control_response"][:50])  # fmt: skip
    return 0


if __name__ == "__main__":
    script_main(main)
