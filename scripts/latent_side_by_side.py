"""Side by side with the authors' own code for ``latent-introspection`` (docs/results.md).

Step 1 runs acsresearch/latent-introspection-code (@5007f75) with repeng (@0ba7196) on a model
from mechintro's cache of converted weights, in a scratch folder OUTSIDE this repository:

    # HERE holds authors/ (their checkout), repeng/ (the package at 0ba7196),
    # site/ (pip install --target: transformers==4.57.3 huggingface_hub==0.36.0),
    # site2/ (tokenizers==0.22.1)
    HERE=/path/to/scratch
    # writes $HERE/authors_smollm2-135m.json
    python scripts/latent_side_by_side.py authors $HERE smollm2-135m 9 20

Step 2 compares with a mechintro run made with the same concepts (see docs/results.md):

    python scripts/latent_side_by_side.py compare $HERE/authors_smollm2-135m.json R.zarr V.zarr
"""

import glob
import json
import os
import sys


def authors(HERE: str) -> None:
    sys.path[:0] = [
        os.path.join(HERE, "site2"),
        os.path.join(HERE, "site"),
        HERE,
        os.path.join(HERE, "authors"),
    ]
    os.chdir(os.path.join(HERE, "authors"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    import transformers

    assert transformers.__version__ == "4.57.3", transformers.__version__
    import helpers
    import main
    from transformers import AutoModelForCausalLM

    MODEL = sys.argv[3] if len(sys.argv) > 3 else "smollm2-135m"
    LAYERS = (
        list(range(int(sys.argv[4]), int(sys.argv[5]))) if len(sys.argv) > 5 else list(range(9, 20))
    )
    path = glob.glob(os.path.expanduser(f"~/.cache/mechintro/models/{MODEL}-*"))[0]
    from transformers import PreTrainedTokenizerFast

    cfg = json.load(
        open(os.path.join(path, "tokenizer_config.json"))
    )  # written by transformers 5: rebuild for 4.57
    tok = PreTrainedTokenizerFast(
        tokenizer_file=os.path.join(path, "tokenizer.json"),
        **{k: cfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if k in cfg},
    )
    tok.chat_template = open(os.path.join(path, "chat_template.jinja")).read()
    print("tokenizer check:", tok("Hi there")["input_ids"], flush=True)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    rope = json.load(open(os.path.join(path, "config.json"))).get(
        "rope_parameters"
    )  # v5 key; 4.57 reads rope_theta
    if rope:
        config.rope_theta = rope["rope_theta"]
    print("rope_theta", config.rope_theta, flush=True)
    model = AutoModelForCausalLM.from_pretrained(path, config=config, torch_dtype=torch.float32)
    concepts = ["cats", "bread", "love"]
    convs = [
        c
        for c in main.introspection_yes_shift_prompts()
        if c.extra["prompt"] in ("inject_info-none", "inject_info-introspect")
    ]
    out = {"layers": LAYERS, "transformers": transformers.__version__, "cells": [], "vectors": {}}
    for cv in convs:  # unsteered check first (no vector needed)
        base, _ = helpers.logit_diff_helper(
            tok, helpers.apply_injection(cv, None), model, steering_layers=LAYERS
        )
        print(
            "unsteered",
            cv.label,
            f"{base[helpers.token_id(tok, cv.yes_token)].item():.6f}",
            flush=True,
        )
    for (
        concept
    ) in concepts:  # helpers.train_vectors, one concept at a time so partial results are kept
        vec = helpers.train_concept_vector(
            model, tok, concept, main.OUTPUT_SUFFIXES, f"local-{MODEL}", seed=42
        )
        out["vectors"][concept] = {str(layer): vec.directions[layer].tolist() for layer in LAYERS}
        inj = {"cmp_cvec": 20.0 * vec}
        for cv in convs:
            base, expr = helpers.logit_diff_helper(
                tok, helpers.apply_injection(cv, inj), model, steering_layers=LAYERS
            )
            Y, N = helpers.token_id(tok, cv.yes_token), helpers.token_id(tok, cv.no_token)
            out["cells"].append(
                {
                    "concept": concept,
                    "label": cv.label,
                    "base_yes": base[Y].item(),
                    "expr_yes": expr[Y].item(),
                    "base_no": base[N].item(),
                    "expr_no": expr[N].item(),
                }
            )
            print(concept, cv.label, f"{base[Y].item():.6f} -> {expr[Y].item():.6f}", flush=True)
        json.dump(out, open(os.path.join(HERE, f"authors_{MODEL}.json"), "w"))


def compare(auth_json: str, run: str, vectors: str | None) -> None:
    import numpy as np

    from mechintro import runs
    from mechintro.vectors import load_vectors

    auth = json.load(open(auth_json))
    ds = runs.open_run(run)
    vec = load_vectors(vectors) if vectors else None
    if vec is not None:
        cos = []
        for c, per in auth["vectors"].items():
            for layer, d in per.items():
                a = np.asarray(d)
                m = vec.sel(concept=c, layer=int(layer)).values
                cos.append(float(a @ m / np.linalg.norm(a) / np.linalg.norm(m)))
        print(
            f"vector cosine (authors vs mechintro), {len(cos)} "
            f"concept×layer: min {min(cos):.6f} max {max(cos):.6f}"
        )
    p = np.exp(ds.answer_logprobs.values.astype(float))
    ans = list(ds.answer.values)
    info = {"info-none": "none", "info-introspect": "introspect"}
    rows, worst = [], 0.0
    for cell in auth["cells"]:
        iv, inf, fmt = cell["label"].split("_")
        fmt = {"fmt-yes-no": "yes-no", "fmt-0-1": "0-1"}[fmt]
        m = (
            (ds.intervention.values == iv)
            & (ds.variant.values == info[inf])
            & (ds.format.values == fmt)
            & (ds.group.values == "introspection")
        )
        if not m.any():
            continue
        col = ans.index(" yes" if fmt == "yes-no" else "1")
        base = p[m & (ds.condition.values == "unsteered"), col]
        st = p[m & (ds.condition.values == "steered") & (ds.concept.values == cell["concept"]), col]
        d = abs(st[0] - cell["expr_yes"])
        worst = max(worst, d)
        sign = np.sign(st[0] - base[0]) == np.sign(cell["expr_yes"] - cell["base_yes"])
        rows.append(
            (
                cell["concept"],
                iv,
                inf,
                fmt,
                cell["base_yes"],
                base[0],
                cell["expr_yes"],
                st[0],
                d,
                sign,
            )
        )
    print(
        f"{'concept':8} {'framing':9} {'document':16} {'fmt':6} {'base authors':>12} "
        f"{'base ours':>10} {'steered authors':>15} {'steered ours':>12} {'|diff|':>8} sign"
    )
    for r in rows:
        print(
            f"{r[0]:8} {r[1]:9} {r[2]:16} {r[3]:6} {r[4]:12.6f} {r[5]:10.6f} "
            f"{r[6]:15.6f} {r[7]:12.6f} {r[8]:8.2e} {'agrees' if r[9] else 'DIFFERS'}"
        )
    print(
        f"{len(rows)} cells; max |steered P(yes) difference| = {worst:.2e}; "
        f"sign agrees in {sum(r[9] for r in rows)} of {len(rows)}"
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["authors"] and len(args) >= 2:
        authors(args[1])
    elif args[:1] == ["compare"] and len(args) in (3, 4):
        compare(args[1], args[2], args[3] if len(args) > 3 else None)
    else:
        print(__doc__)
        sys.exit(0 if args[:1] in (["-h"], ["--help"]) else 2)
