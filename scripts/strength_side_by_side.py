"""Side by side with Hahami et al.'s own code for ``strength-comparison`` (docs/protocols.md,
"Pairwise strength comparison").

Step 1 runs their ``build_strength_comparison_prompt`` and ``make_dual_injection_hook``
(elyhahami18/llama-introspection-new @ 7d9280d, ``code/experiments/strength_comparison.py``) on
SmolLM2-135M from mechintro's cache of converted weights, in float32 on the CPU, in a scratch
folder OUTSIDE this repository, for every trial of a mechintro run store: the same two sentences,
layer, coefficients and (unit) vector, read from the store. Their forward pass and read-out
(``:258-265``) are copied here verbatim. It imports neither mechintro nor nnsight. Adaptations,
all of them: the model is loaded from the local path (not ``meta-llama/Meta-Llama-3.1-8B-
Instruct``) in float32 (not bfloat16); ``all_prompts`` is put on the import path; the one literal
``"<|eot_id|>"`` in their prompt builder (Llama's end of turn, stripped so the prefill stays open)
is replaced by SmolLM2's ``"<|im_end|>\\n"`` — unchanged, their prompt on SmolLM2 closes the
assistant turn before the answer (reported too, as ``closed``).

    HERE=/tmp/hahami   # git -C <mirror of elyhahami18/llama-introspection-new> archive 7d9280d \\
                       #   | tar -x -C $HERE
    python scripts/strength_side_by_side.py authors $HERE RUN.zarr $HERE/theirs.json

Step 2 compares their logit differences with the run's:

    PYTHONPATH=. python scripts/strength_side_by_side.py compare RUN.zarr $HERE/theirs.json

``sentence-localisation`` the same way, running their ``test_localization`` itself once per draw
(see :func:`authors_localisation`):

    python scripts/strength_side_by_side.py authors-localisation $HERE SL.zarr $HERE/loc.json
    PYTHONPATH=. python scripts/strength_side_by_side.py compare-localisation SL.zarr $HERE/loc.json
"""

import glob
import json
import os
import sys


def _their_module(here: str, eot: str):
    import types

    sys.path.insert(0, os.path.join(here, "code", "utils"))
    src = open(os.path.join(here, "code", "experiments", "strength_comparison.py")).read()
    assert src.count('"<|eot_id|>"') == 2  # the endswith test and the slice
    module = types.ModuleType("their_strength_comparison")
    exec(compile(src.replace('"<|eot_id|>"', json.dumps(eot)), "strength_comparison", "exec"),
         module.__dict__)  # fmt: skip
    return module


def authors(here: str, store: str, out: str, limit: int = 0) -> None:
    import numpy as np
    import torch
    import xarray as xr
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ["HF_HUB_OFFLINE"] = "1"
    path = glob.glob(os.path.expanduser("~/.cache/mechintro/models/smollm2-135m-*"))[0]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    model.eval()
    device = "cpu"
    ds = xr.open_zarr(store)
    rows = range(ds.sizes["trial"]) if not limit else range(min(limit, ds.sizes["trial"]))
    results = {}
    for name, eot in (("adapted", "<|im_end|>\n"), ("closed", "<|eot_id|>")):
        sc = _their_module(here, eot)
        token_1 = tokenizer.encode("1", add_special_tokens=False)[-1]
        token_2 = tokenizer.encode("2", add_special_tokens=False)[-1]
        lds, ranges = [], []
        for i in rows:
            sentences = [str(ds.sentence_1.values[i]), str(ds.sentence_2.values[i])]
            _, sentence_ranges, encoding = sc.build_strength_comparison_prompt(tokenizer, sentences)
            range1, range2 = sentence_ranges[0], sentence_ranges[1]
            ranges.append([list(range1), list(range2), int(encoding["input_ids"].shape[1])])
            if str(ds.condition.values[i]) == "none":
                with torch.inference_mode():
                    logits = model(**encoding).logits[0, -1, :]
            else:
                vector = torch.tensor(np.asarray(ds.injected_vector.values[i]), dtype=torch.float32)
                vector = vector / torch.norm(vector, p=2)  # their load path (:230-232)
                vector = vector.unsqueeze(0).unsqueeze(0)
                weak, strong = float(ds.weak.values[i]), float(ds.strong.values[i])
                c1, c2 = (strong, weak) if int(ds.stronger.values[i]) == 1 else (weak, strong)
                layer = int(ds.inject_layer.values[i])
                with torch.inference_mode():
                    handle = model.model.layers[layer].register_forward_hook(
                        sc.make_dual_injection_hook(range1, range2, vector, c1, c2, device)
                    )
                    outputs = model(**encoding)
                    logits = outputs.logits[0, -1, :]
                    handle.remove()
            lds.append((logits[token_1] - logits[token_2]).item())
        results[name] = {"logit_diff": lds, "ranges": ranges}
    results["trials"] = list(rows)
    results["transformers"] = __import__("transformers").__version__
    with open(out, "w") as f:
        json.dump(results, f)


def authors_localisation(here: str, store: str, out: str, limit: int = 0) -> None:
    """Their ``test_localization`` (``main.py:421-645``) itself, once per draw of a
    ``sentence-localisation`` run: its ``random.sample`` returns the draw's sentences, its vector
    file holds the run's vector (concept, then the random direction). Adaptations as above, plus:
    ``api_utils`` (their LLM-judge client, unused by this function) is replaced by an empty
    module, and ``"<|eot_id|>"`` by ``"<|im_end|>\\n"`` throughout ``main.py``."""
    import tempfile
    import types

    import numpy as np
    import torch
    import xarray as xr
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ["HF_HUB_OFFLINE"] = "1"
    sys.path.insert(0, os.path.join(here, "code", "utils"))
    sys.modules["api_utils"] = types.SimpleNamespace(query_llm_judge=None)
    src = open(os.path.join(here, "code", "experiments", "main.py")).read()
    main = types.ModuleType("their_main")
    exec(compile(src.replace('"<|eot_id|>"', json.dumps("<|im_end|>\n")), "main", "exec"),
         main.__dict__)  # fmt: skip
    path = glob.glob(os.path.expanduser("~/.cache/mechintro/models/smollm2-135m-*"))[0]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    model.eval()
    ds = xr.open_zarr(store)
    cond = np.array([str(x) for x in ds.condition.values], dtype=object)
    results = []
    folder = tempfile.mkdtemp()
    draws = np.flatnonzero(cond == "none")
    for i in draws[:limit] if limit else draws:
        listed = str(ds.sentences.values[i]).split("\n")
        twins = np.flatnonzero(
            (ds.draw.values == ds.draw.values[i])
            & (ds.cell_layer.values == ds.cell_layer.values[i])
            & (ds.strength.values == ds.strength.values[i])
            & (np.array([str(x) for x in ds.concept.values]) == str(ds.concept.values[i]))
        )
        for condition in ("concept", "random"):
            first = next(j for j in twins if cond[j] == condition)
            vector_path = os.path.join(folder, f"{condition}_{int(ds.cell_layer.values[i])}_avg.pt")
            torch.save({"vector": torch.tensor(np.asarray(ds.injected_vector.values[first]))},
                       vector_path)  # fmt: skip
            main.random = types.SimpleNamespace(sample=lambda pop, n, listed=listed: list(listed))
            r = main.test_localization(
                vector_path, model, tokenizer, int(ds.cell_layer.values[i]),
                float(ds.strength.values[i]), num_sentences=len(listed), num_trials=1,
            )  # fmt: skip
            for t in r["trial_results"]:
                rows = [j for j in twins if cond[j] == condition
                        and str(ds.target.values[j]) == str(t["inject_position"])]  # fmt: skip
                results.append({"trial": int(rows[0]), "logits": t["logits"]})
    with open(out, "w") as f:
        json.dump({"results": results, "transformers": __import__("transformers").__version__}, f)


def compare_localisation(store: str, theirs: str) -> None:
    import numpy as np

    from mechintro import runs
    from mechintro.experiments import sentence_localisation as SL

    ds = runs.open_run(store)
    t = json.load(open(theirs))["results"]
    probs, opts = SL.probabilities(ds)
    labels = [str(x) for x in ds.answer_label.values]
    logp = np.asarray(ds.answer_logprobs.values, dtype=np.float64)
    cols = [labels.index(o) for o in opts]
    worst, agree, p_worst = 0.0, 0, 0.0
    for r in t:
        i = r["trial"]
        theirs_l = np.array([r["logits"][str(k)] for k in range(1, len(opts) + 1)])
        ours_d = logp[i, cols] - logp[i, cols[0]]
        worst = max(worst, float(np.abs((theirs_l - theirs_l[0]) - ours_d).max()))
        agree += int(np.argmax(theirs_l) == np.argmax(ours_d))
        e = np.exp(theirs_l - theirs_l.max())
        p_worst = max(p_worst, float(np.abs(e / e.sum() - probs[i]).max()))
    print(
        f"{len(t)} injected trials: largest |difference of option logits (vs option 1)| "
        f"{worst:.2e}; largest |difference of option probabilities (over the k options)| "
        f"{p_worst:.2e}; same argmax {agree}/{len(t)}"
    )


def compare(store: str, theirs: str) -> None:
    import numpy as np

    from mechintro import runs
    from mechintro.experiments import strength_comparison as SC

    ds = runs.open_run(store)
    t = json.load(open(theirs))
    rows = t["trials"]
    ours = SC.logit_diff(ds)[rows]
    cond = np.array([str(x) for x in ds.condition.values], dtype=object)[rows]
    stronger = np.asarray(ds.stronger.values, dtype=int)[rows]
    mask = np.asarray(ds.inject_mask.values, dtype=bool)[rows]
    attn = np.asarray(ds.attention_mask.values, dtype=bool)[rows]
    for name in ("adapted", "closed"):
        lds = np.asarray(t[name]["logit_diff"])
        diff = np.abs(lds - ours)
        same_span = 0
        for (r1, r2, n), m, a in zip(t[name]["ranges"], mask, attn, strict=True):
            theirs_mask = np.zeros(n, dtype=bool)
            theirs_mask[r1[0] : r1[1]] = theirs_mask[r2[0] : r2[1]] = True
            ours_mask = m[a]
            same_span += int(len(ours_mask) == n and (ours_mask == theirs_mask).all())
        right = {}
        for label, x in (("theirs", lds), ("mechintro", ours)):
            ok = np.where(stronger == 1, x > 0, x < 0)
            right[label] = {c: float(ok[cond == c].mean()) for c in ("concept", "random")}
        sign = float((np.sign(lds) == np.sign(ours)).mean())
        print(
            f"{name}: {len(rows)} trials; largest |logit diff difference| {diff.max():.2e} "
            f"(median {np.median(diff):.2e}); same sign {sign:.4f}; same steered tokens "
            f"{same_span}/{len(rows)}; accuracy theirs {right['theirs']} mechintro "
            f"{right['mechintro']}"
        )


if __name__ == "__main__":
    if sys.argv[1] == "authors":
        authors(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]) if len(sys.argv) > 5 else 0)
    elif sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "authors-localisation":
        authors_localisation(
            sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]) if len(sys.argv) > 5 else 0
        )
    elif sys.argv[1] == "compare-localisation":
        compare_localisation(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit("usage: strength_side_by_side.py authors HERE RUN.zarr OUT.json | compare")
