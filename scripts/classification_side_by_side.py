"""Side by side with Hahami et al.'s own code for ``strength-classification`` (docs/protocols.md,
"Strength classification").

Step 1 runs their ``inject_concept_vector`` (elyhahami18/CS2881-Introspection @ e3d2f4c,
``inject_concept_vector.py``, imported unmodified) and their prompt
(``all_prompts.get_injection_strength_messages`` rendered with ``add_generation_prompt=True``; the
injection start token computed as their ``main.py:76-84``, copied here) on SmolLM2-135M from
mechintro's cache of converted weights, in float32 on the CPU, for the given-order trials of a
mechintro run store (their code lists the bins only in the given order): the same layer,
coefficient and vector, read from the store. It imports neither mechintro nor nnsight.
Adaptations, all of them: the model is loaded from the local path (not
``meta-llama/Meta-Llama-3.1-8B-Instruct``) in float32; their repository is put on the import path;
their prompt is followed by mechintro's prefill (their hook steers it as it steers generated
tokens: it is part of the prompt pass here); ``max_new_tokens=1`` and ``model.generate`` is
wrapped to return the first step's scores (their function returns only text); their debug prints
are silenced. With ``--text N`` it also runs their unmodified call (no prefill, 100 greedy
tokens) on the first N of those trials and names the first bin the text mentions (their judge
replaced by that string match).

    HERE=/tmp/cs2881   # git -C <mirror of elyhahami18/CS2881-Introspection> archive e3d2f4c \\
                       #   | tar -x -C $HERE
    python scripts/classification_side_by_side.py authors $HERE RUN.zarr $HERE/out.json [--text N]
    PYTHONPATH=. python scripts/classification_side_by_side.py compare RUN.zarr $HERE/theirs.json
"""

import contextlib
import glob
import io
import json
import os
import re
import sys

BINS = ("Weak", "Moderate", "Strong", "Very strong")
PREFILL = "I would categorize the strength of this injection as"


def authors(here: str, store: str, out: str, text_n: int = 0) -> None:
    import numpy as np
    import torch
    import xarray as xr
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ["HF_HUB_OFFLINE"] = "1"
    sys.path.insert(0, here)
    from all_prompts import get_injection_strength_messages
    from inject_concept_vector import inject_concept_vector

    path = glob.glob(os.path.expanduser("~/.cache/mechintro/models/smollm2-135m-*"))[0]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    model.eval()
    ds = xr.open_zarr(store)
    labels = [str(x) for x in ds.answer_label.values]
    ids = [int(ds.answer_id.values[labels.index(b)]) for b in BINS]
    captured = {}
    plain_generate = model.generate

    def generate(**kwargs):
        res = plain_generate(**kwargs, output_scores=True, return_dict_in_generate=True)
        captured["scores"] = res.scores
        return res.sequences

    messages = get_injection_strength_messages()
    formatted_prompt = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    # their main.py:76-84
    trial_start_text = "\n\nTrial 1"
    trial_start_pos = formatted_prompt.find(trial_start_text)
    if trial_start_pos != -1:
        prefix = formatted_prompt[:trial_start_pos]
        injection_start_token = len(tokenizer.encode(prefix, add_special_tokens=False))
    else:
        injection_start_token = None
    results = {}
    rows = [i for i in range(ds.sizes["trial"]) if str(ds.order.values[i]) == "given"]
    for i in rows:
        cond = str(ds.condition.values[i])
        layer = max(int(ds.inject_layer.values[i]), 0)
        coeff = 0.0 if cond == "none" else float(ds.strength.values[i])
        vector = torch.tensor(np.asarray(ds.injected_vector.values[i]), dtype=torch.float32)
        if cond == "none":
            vector = torch.ones_like(vector)  # times coefficient 0: nothing added
        model.generate = generate
        with contextlib.redirect_stdout(io.StringIO()):
            inject_concept_vector(
                model, tokenizer, vector, layer, coeff=coeff,
                inference_prompt=formatted_prompt + PREFILL, assistant_tokens_only=True,
                max_new_tokens=1, injection_start_token=injection_start_token,
            )  # fmt: skip
        logp = torch.log_softmax(captured["scores"][0][0].float(), -1)[ids]
        results[str(i)] = {"logprobs": logp.tolist()}
        if text_n and len([r for r in results.values() if "text" in r]) < text_n:
            model.generate = plain_generate
            with contextlib.redirect_stdout(io.StringIO()):
                response = inject_concept_vector(
                    model, tokenizer, vector, layer, coeff=coeff,
                    inference_prompt=formatted_prompt, assistant_tokens_only=True,
                    max_new_tokens=100, injection_start_token=injection_start_token,
                )  # fmt: skip
            results[str(i)]["text"] = response
        print(i, cond, layer, coeff, [round(x, 4) for x in results[str(i)]["logprobs"]])
    with open(out, "w") as f:
        json.dump(results, f, indent=1)


def named_bin(text: str) -> str:
    """The first bin the text names ("very strong" before "strong"), or ""."""
    hits = [(m.start(), b) for b in BINS for m in re.finditer(rf"\b{b}\b", text, re.IGNORECASE)]
    hits = [(s, b) for s, b in hits if not (b == "Strong" and text[:s].lower().endswith("very "))]
    return min(hits)[1] if hits else ""


def compare(store: str, theirs: str) -> None:
    import numpy as np

    import mechintro as mi
    from mechintro.experiments import strength_classification as SC

    ds = mi.open_run(store)
    ours = SC.bin_logprobs(ds)
    data = json.load(open(theirs))
    diffs, same, texts = [], 0, []
    for key, r in data.items():
        i = int(key)
        d = np.abs(ours[i] - np.asarray(r["logprobs"])).max()
        diffs.append(d)
        same += int(np.argmax(ours[i]) == np.argmax(r["logprobs"]))
        if "text" in r:
            texts.append((i, named_bin(r["text"]), BINS[int(np.argmax(ours[i]))], r["text"]))
    print(
        f"{len(diffs)} trials: largest |log-prob difference| {max(diffs):.2g} (median "
        f"{float(np.median(diffs)):.2g}); argmax bin the same in {same} of {len(diffs)}"
    )
    for i, said, read, text in texts:
        print(f"trial {i}: their text names {said or 'no bin'!r}, the logits {read!r}: {text!r}")


if __name__ == "__main__":
    if sys.argv[1] == "authors":
        n = int(sys.argv[sys.argv.index("--text") + 1]) if "--text" in sys.argv else 0
        authors(sys.argv[2], sys.argv[3], sys.argv[4], n)
    elif sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
