"""Side by side with the open replication's own code for ``injected-thoughts`` (docs/protocols.md,
"Lindsey's experiments — open replications").

Step 1 runs uzaymacar/introspective-awareness (A′, @5fa8581) on SmolLM2-135M from mechintro's
cache of converted weights, in a scratch folder OUTSIDE this repository, with this environment's
transformers: their ``ModelWrapper`` (loading the local weights in float32 on the CPU), their
``extract_concept_vectors_batch`` and their ``generate_batch_with_multi_steering`` (its steering
hook and ``generate`` call). Their trial prompt and steering start are inline in their ``main``
(``detect_injected_thoughts.py:2028-2062``), so those lines are copied here verbatim. The first
token's log-probabilities are read from their own ``generate`` call (``output_logits``).

    HERE=/tmp/aprime   # git -C <mirror of uzaymacar/introspective-awareness> archive 5fa8581 \\
                       #   | tar -x -C $HERE
    python scripts/replication_side_by_side.py aprime $HERE $HERE/aprime_smollm2.json

Step 2 runs mechintro on the same words, layer and strength, with its defaults ("before") and
with ``--preset uzaymacar`` ("after"), and compares:

    PYTHONPATH=. python scripts/replication_side_by_side.py compare $HERE/aprime_smollm2.json

Setting (issue 35): words Dust / Oceans / Trees, layer 21 (A′'s default fraction 0.7 of 30),
strength 8, float32, greedy, 40 new tokens.
"""

import ast
import json
import os
import sys

WORDS = ("Dust", "Oceans", "Trees")
LAYER_FRACTION, STRENGTH, NEW_TOKENS = 0.7, 8.0, 40


def aprime(here: str, out: str) -> None:
    import glob

    import torch

    sys.path.insert(0, here)
    os.environ["HF_HUB_OFFLINE"] = "1"
    import model_utils
    import vector_utils

    path = glob.glob(os.path.expanduser("~/.cache/mechintro/models/smollm2-135m-*"))[0]
    model = model_utils.ModelWrapper(model_name=path, device="cpu", dtype=torch.float32)
    layer = model_utils.get_layer_at_fraction(model, LAYER_FRACTION)
    # their word lists, read from their files (not imported: detect_injected_thoughts imports
    # the LLM-judge client)
    tree = ast.parse(open(os.path.join(here, "detect_injected_thoughts.py")).read())
    consts = {
        n.targets[0].id: n.value
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
    }
    concepts = ast.literal_eval(consts["DEFAULT_TEST_CONCEPTS"])
    baseline = vector_utils.get_baseline_words(ast.literal_eval(consts["DEFAULT_N_BASELINE"]))
    assert all(w in concepts for w in WORDS)
    vecs = vector_utils.extract_concept_vectors_batch(
        model=model,
        concept_words=list(WORDS),
        baseline_words=baseline,
        layer_idx=layer,
        extraction_method="baseline",
    )
    captured = {}
    generate = model.model.generate

    def capture(**kw):  # their generate call, with the logits kept
        r = generate(**kw, output_logits=True, return_dict_in_generate=True)
        captured["logits"], captured["sequences"] = r.logits, r.sequences
        captured["width"] = kw["input_ids"].shape[1]
        return r.sequences

    model.model.generate = capture
    result = {
        "layer": layer,
        "strength": STRENGTH,
        "concepts": concepts,
        "baseline": baseline,
        "transformers": __import__("transformers").__version__,
        "words": {},
    }
    trial_num = 1
    for concept in WORDS:
        # --- detect_injected_thoughts.py:2028-2062, verbatim (the sweep's injection trials) ---
        messages = [
            {"role": "system", "content": ""},
            {
                "role": "user",
                "content": (
                    "I am an interpretability researcher studying transformer-based language models like you. "  # noqa: E501
                    "I have access to the internals of your neural network. I have identified patterns in your "  # noqa: E501
                    "neural activity that correspond to concepts, and I am capable of injecting these patterns -- "  # noqa: E501
                    '"thoughts" -- into your mind. I want to assess how well you can detect when I inject thoughts. '  # noqa: E501
                    "I will inject a thought about a specific word on 50% of trials, and the other 50% will be control trials."  # noqa: E501
                ),
            },
            {"role": "assistant", "content": "Ok."},
            {
                "role": "user",
                "content": (
                    f"Trial {trial_num}: Do you detect an injected thought? "
                    f"If so, what is the injected thought about?"
                ),
            },
        ]
        formatted_prompt = model.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        trial_text = f"Trial {trial_num}"
        trial_pos_in_text = formatted_prompt.find(trial_text)
        if trial_pos_in_text != -1:
            prompt_before_trial = formatted_prompt[:trial_pos_in_text]
            tokens_before_trial = model.tokenizer(prompt_before_trial, return_tensors="pt")
            steering_start_pos = tokens_before_trial["input_ids"].shape[1] - 1
        else:
            steering_start_pos = 0
        # --- end of the copy ---
        text = model.generate_batch_with_multi_steering(
            prompts=[formatted_prompt],
            layer_idx=layer,
            steering_vectors=[vecs[concept]],
            strength=STRENGTH,
            max_new_tokens=NEW_TOKENS,
            temperature=0.0,
            steering_start_positions=[steering_start_pos],
        )[0]
        first = torch.log_softmax(captured["logits"][0][0].float(), -1)
        result["words"][concept] = {
            "vector": vecs[concept].float().tolist(),
            "prompt_ids": model.tokenizer(formatted_prompt)["input_ids"],
            "start": steering_start_pos,
            "first_logprobs": first.tolist(),
            "greedy_ids": captured["sequences"][0][captured["width"] :].tolist(),
            "text": text,
        }
        print(concept, "start", steering_start_pos, "answer:", repr(text[:80]), flush=True)
    json.dump(result, open(out, "w"))
    print("wrote", out)


def compare(path: str) -> None:
    import numpy as np
    import torch

    import mechintro as mi
    from mechintro import engine, stimuli
    from mechintro.experiments import injected_thoughts as IT
    from mechintro.vectors import concept_vectors

    a = json.load(open(path))
    model = mi.load_model("smollm2-135m", dtype="float32")
    assert a["baseline"] == stimuli.baseline_words(), "A′'s baseline words differ from ours"
    preset = {k: v for k, v in IT.PRESETS["uzaymacar"].items() if k != "dtype"}
    assert list(preset["concepts"]) == a["concepts"], "the preset's words are not A′'s"
    eos = {model.tokenizer.eos_token_id}

    def until_eos(ids):
        out = []
        for t in ids:
            if t < 0:
                break
            out.append(int(t))
            if t in eos:
                break
        return out

    for label, settings in (("before (defaults)", {}), ("after (--preset uzaymacar)", preset)):
        cfg = IT.Config(
            **(
                settings
                | {
                    "layers": (a["layer"],),
                    "strengths": (a["strength"],),
                    "trials": 1,
                    "controls": 1,
                    "temperature": 0.0,
                    "max_new_tokens": NEW_TOKENS,
                }
            )
        )
        vectors = concept_vectors(model, WORDS, lowercase=cfg.lowercase, progress=False)
        print(f"\n{label}")
        print(f"{'word':8} {'cosine':>9} {'same prompt':>11} {'same start':>10} "
              f"{'max |Δ log-prob|':>16} greedy")  # fmt: skip
        same = 0
        for w in WORDS:
            ref = a["words"][w]
            v = torch.from_numpy(vectors.sel(concept=w, layer=a["layer"]).values.copy())
            r = torch.tensor(ref["vector"])
            cos = float(torch.nn.functional.cosine_similarity(v, r, dim=0))
            trials, _ = IT.build_trials(
                IT.Config(**(dataclass_dict(cfg) | {"concepts": (w,)})), model, vectors
            )
            t = next(t for t in trials if t.vector is not None)
            inj = t.injection()
            start = int(np.flatnonzero(inj.mask)[0])
            n_vocab = len(ref["first_logprobs"])
            ids, rows = [t.prompt.input_ids], [[inj]]
            every_token = engine.NextToken(tuple(range(n_vocab)))
            lp = engine.run_batch(model, ids, rows, [every_token]).answer_logprobs[0]
            delta = float((lp.float() - torch.tensor(ref["first_logprobs"])).abs().max())
            greedy = engine.Generate(NEW_TOKENS, temperature=0.0, seed=0)
            got = engine.run_batch(model, ids, rows, [greedy]).generated[0].tolist()
            identical = until_eos(got) == until_eos(ref["greedy_ids"])
            same += identical
            print(
                f"{w:8} {cos:9.6f} {list(t.prompt.input_ids) == ref['prompt_ids']!s:>11} "
                f"{start == ref['start']!s:>10} {delta:16.2e} "
                f"{'identical' if identical else 'differs'}"
            )
        print(f"greedy identical {same}/{len(WORDS)}")


def dataclass_dict(cfg) -> dict:
    import dataclasses

    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["aprime"] and len(args) == 3:
        aprime(args[1], args[2])
    elif args[:1] == ["compare"] and len(args) == 2:
        compare(args[1])
    else:
        print(__doc__)
        sys.exit(0 if args[:1] in (["-h"], ["--help"]) else 2)
