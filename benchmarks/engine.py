"""mechintro's engine against plain transformers + torch doing the same work, side by side in one
process (repeats interleaved, medians reported): ratios, not absolute speeds, are the result.

    .venv/bin/python benchmarks/engine.py [--model smollm2-135m] [--batch 16] [--new-tokens 30] \\
        [--repeats 3]
    python benchmarks/engine.py --random-init 3b --tokenizer DIR --device cuda \\
        --dtype bfloat16  # GPU

Work per measurement: ``--batch`` copies of Lindsey's injected-thoughts prompt, the concept-size
vector added at the middle layer on the injection window (the ``\\n\\n`` before "Trial 1" to the
end), as in ``detection-logits`` / ``injected-thoughts``.

* **logit mode**: a plain batched forward with a forward hook adding the vector (baseline) vs
  ``engine.forward`` (an nnsight trace) without and with the shared-prefix cache (the prompt's
  unsteered first tokens computed once, outside the timed loop after the first call), and
  ``engine.forward(record=True)`` (every layer's residual stream copied to the host as float16).
* **generation**: ``--new-tokens`` sampled tokens per trial with the vector added on the window
  and on every generated token — a plain loop, one trial at a time (``generate`` with the hook)
  vs one batched ``engine.generate`` call, without and with the shared-prefix cache, and (the
  ceiling without nnsight) transformers' own batched ``generate`` with the same hook and prefix
  cache. Rows may stop early at an end-of-sequence token, so generated tokens per second are
  reported beside trials per second. ``engine.generate`` runs with ``prune=False`` (every row
  kept to the end, as before pruning) and, in its own row, with pruning (the default).
* **generation, the protocol workload** (``--protocol-batches``): whole batches of the default
  ``injected-thoughts`` run as the runner builds them — each trial its own concept, layer and
  strength, controls among them, 100 tokens at temperature 1, ending at the end-of-sequence
  token — one trial at a time (transformers' ``generate`` + hooks, each trial stopping at its
  own end) vs ``engine.generate`` batched with the shared prefix, keeping every row to the end
  (``prune=False``, as before) and dropping rows as they end (the default). It checks that
  pruned and unpruned give the same sampled answers, and (``--check-greedy``) that greedy
  decoding one at a time and batched give the same tokens.

``--random-init 3b`` builds a Qwen2-architecture model of 2.8 B parameters from its config with
random weights (no download: the speed of a forward pass does not depend on the weights' values)
and the tokenizer found in ``--tokenizer`` (e.g. SmolLM2's, from the model cache).
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

from mechintro.cli import script_main


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def random_model(size: str, tokenizer_dir: str, device: str, dtype: torch.dtype):
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from mechintro.models import from_hf

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    shapes = {
        "3b": dict(
            hidden_size=2048,
            num_hidden_layers=36,
            num_attention_heads=16,
            num_key_value_heads=2,
            intermediate_size=11008,
        ),
        "0.5b": dict(
            hidden_size=896,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            intermediate_size=4864,
        ),
    }[size]
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **shapes,
    )
    torch.manual_seed(0)
    with torch.device(device):
        hf = Qwen2ForCausalLM(config).to(dtype)
    return from_hf(hf, tokenizer, name=f"random-qwen2-{size}", weights_sha256="0" * 64)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument(
        "--random-init",
        choices=["0.5b", "3b"],
        help="a random-weight Qwen2 model of this size instead of --model",
    )
    p.add_argument("--tokenizer", help="tokenizer folder for --random-init")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-generation", action="store_true")
    p.add_argument(
        "--skip-fixed-generation",
        action="store_true",
        help="leave out the fixed workload (copies of one trial, --new-tokens each)",
    )
    p.add_argument(
        "--protocol-batches",
        default="0,40",
        help="which batches of the default injected-thoughts run form the protocol workload "
        "(comma-separated batch indices; empty: none)",
    )
    p.add_argument(
        "--check-greedy",
        type=int,
        default=4,
        help="trials of the protocol workload decoded greedily one at a time and batched, to "
        "check that they give the same tokens (0: no check)",
    )
    p.add_argument("--skip-logits", action="store_true")
    p.add_argument(
        "--skip-plain-batched",
        action="store_true",
        help="leave out the plain-transformers batched generation row",
    )
    args = p.parse_args()

    import mechintro as mi
    from mechintro import engine
    from mechintro.arch import get_module
    from mechintro.experiments.injected_thoughts import prompt_and_window
    from mechintro.runner import YES_NO

    dtype = getattr(torch, args.dtype)
    device = torch.device(args.device)
    t0 = time.perf_counter()
    if args.random_init:
        model = random_model(args.random_init, args.tokenizer, args.device, dtype)
    else:
        model = mi.load_model(
            args.model, dtype=args.dtype, device_map=args.device if args.device != "cpu" else None
        )
    load = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.hf.parameters())
    prompt, window = prompt_and_window(model, "detect")
    ids = list(prompt.input_ids)
    mask = window.resolve(prompt)
    layer = model.n_layers // 2
    # a vector of the size of a concept vector at this layer: Lindsey's vectors have about the
    # residual norm; a random direction of that norm does the same arithmetic
    with torch.no_grad():
        norm = float(
            model.hf(torch.tensor([ids], device=device), output_hidden_states=True)
            .hidden_states[layer + 1][0]
            .norm(dim=-1)
            .mean()
        )
    g = torch.Generator().manual_seed(0)
    vector = torch.randn(model.d_model, generator=g)
    vector = vector / vector.norm() * norm
    answer_ids = YES_NO.resolve(model.tokenizer)[2]
    injections = [
        engine.Injection(vector=vector * 4.0, layers=(layer,), mask=mask, generated=True)
    ] * args.batch
    prompts = [ids] * args.batch
    hardware = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    print(
        f"model {model.name}: {n_params / 1e9:.2f} B parameters, {model.n_layers} layers, "
        f"d_model {model.d_model}, {args.dtype} on {args.device} ({hardware}); load {load:.1f} s"
    )
    print(
        f"prompt {len(ids)} tokens, injection on the last {sum(mask)}, "
        f"layer {layer}; batch {args.batch}; torch {torch.__version__}"
    )

    block = get_module(model.hf, model.arch.layers)[layer]
    add = torch.tensor(mask, dtype=dtype, device=device)[None, :, None] * (vector * 4.0).to(
        device, dtype
    )

    def hook(_module, _inputs, output):
        h = output[0] if isinstance(output, tuple) else output
        if h.shape[1] == add.shape[1]:  # the prompt pass
            h = h + add
        else:  # a generated token
            h = h + add[:, -1:]
        return (h, *output[1:]) if isinstance(output, tuple) else h

    ids_t = torch.tensor(prompts, device=device)

    def plain_forward():
        handle = block.register_forward_hook(hook)
        try:
            with torch.no_grad():
                logits = model.hf(ids_t, logits_to_keep=1).logits[:, -1].float()
                return torch.log_softmax(logits, -1)[:, answer_ids].cpu()
        finally:
            handle.remove()

    shared = engine.shared_prefix(prompts, injections)

    def mi_forward(record: bool, reuse: bool = True):
        return lambda: engine.forward(
            model,
            prompts,
            injections,
            answer_ids=answer_ids,
            record=record,
            prefix=shared if reuse else 0,
        )

    # the two compute the same numbers
    ref, ours = (
        plain_forward(),
        engine.forward(model, prompts, injections, answer_ids=answer_ids).answer_logprobs,
    )
    print(f"check: max |plain − engine| log-probability {float((ref - ours).abs().max()):.2e}")

    rows = (
        ("plain", plain_forward),
        ("engine, no reuse", mi_forward(False, reuse=False)),
        ("engine", mi_forward(False)),
        ("engine+record", mi_forward(True)),
        ("record, no reuse", mi_forward(True, reuse=False)),
    )
    times: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _ in range(
        0 if args.skip_logits else args.repeats + 1
    ):  # the first round warms up and is dropped
        for name, fn in rows:
            times[name].append(timed(fn, device))
    med = {k: statistics.median(v[1:]) for k, v in times.items() if len(v) > 1}
    if med:
        report_logits(args, med, shared, len(ids))
    if args.skip_generation:
        return 0
    if not args.skip_fixed_generation:
        generation(args, model, ids, prompts, injections, shared, block, hook, device)
    if args.protocol_batches.strip():
        protocol_generation(args, model, device)
    return 0


def report_logits(args, med, shared, n_tokens) -> None:
    print(f"\nlogit mode, batch {args.batch} (median of {args.repeats} interleaved repeats):")
    for k, v in med.items():
        print(f"  {k:<14} {v:8.3f} s   {args.batch / v:8.2f} trials/s")
    print(
        "  speed ratio, engine without prefix reuse / plain hooked "
        f"forward: {med['plain'] / med['engine, no reuse']:.3f}"
    )
    print(
        f"  speed ratio, shared-prefix reuse ({shared} of {n_tokens} tokens computed "
        f"once) / recomputing it: {med['engine, no reuse'] / med['engine']:.2f} (vs "
        f"the plain hooked forward: {med['plain'] / med['engine']:.2f})"
    )
    print(
        "  recording every layer's residuals (float16 to host) costs "
        f"{med['engine+record'] / med['engine'] - 1:+.1%} time with reuse, "
        f"{med['record, no reuse'] / med['engine, no reuse'] - 1:+.1%} without"
    )


def generation(args, model, ids, prompts, injections, shared, block, hook, device) -> None:
    from transformers import GenerationConfig

    from mechintro import engine

    eos = engine._eos_ids(model)
    config = GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=args.new_tokens,
        pad_token_id=model.tokenizer.pad_token_id,
        eos_token_id=eos,
    )
    one = torch.tensor([ids], device=device)
    counts: dict[str, int] = {}

    def plain_loop():
        handle = block.register_forward_hook(hook)
        tokens = 0
        try:
            with torch.no_grad():
                for i in range(args.batch):
                    torch.manual_seed(i)
                    out = model.hf.generate(
                        one, attention_mask=torch.ones_like(one), generation_config=config
                    )
                    tokens += out.shape[1] - one.shape[1]
        finally:
            handle.remove()
        counts["plain loop"] = tokens

    def batched(reuse: bool, prune: bool = False):
        name = "engine batched + prefix" if reuse else "engine batched"
        name += " + pruning" if prune else ""

        def call():
            res = engine.generate(
                model,
                prompts,
                injections,
                max_new_tokens=args.new_tokens,
                temperature=1.0,
                seed=0,
                prefix=shared if reuse else 0,
                prune=prune,
            )
            counts[name] = int((res.generated >= 0).sum())

        return name, call

    rest = torch.tensor(injections[0].mask[shared:], dtype=model.dtype, device=device)[
        None, :, None
    ] * (injections[0].vector.to(device, model.dtype))

    def rest_hook(
        _module, _inputs, output
    ):  # the prompt pass runs only the tokens after the cached prefix
        h = output[0] if isinstance(output, tuple) else output
        h = h + (rest if h.shape[1] == rest.shape[1] else rest[:, -1:])
        return (h, *output[1:]) if isinstance(output, tuple) else h

    def plain_batched_prefix():
        """The ceiling without nnsight: transformers' own batched generate, the same hook, the
        same prefix cache."""
        cache, _ = engine.prefix_state(model, ids[:shared], False)
        cache = copy.deepcopy(cache)
        cache.batch_repeat_interleave(len(prompts))
        batch = torch.tensor(prompts, device=device)
        handle = block.register_forward_hook(rest_hook)
        try:
            with torch.no_grad():
                torch.manual_seed(0)
                out = model.hf.generate(
                    batch,
                    attention_mask=torch.ones_like(batch),
                    past_key_values=cache,
                    generation_config=config,
                )
        finally:
            handle.remove()
        counts["plain batched + prefix"] = int(out.shape[0] * (out.shape[1] - batch.shape[1]))

    rows = (
        ("plain loop", plain_loop),
        batched(False),
        batched(True),
        batched(True, prune=True),
        ("plain batched + prefix", plain_batched_prefix),
    )
    gen: dict[str, list[float]] = {name: [] for name, _ in rows}
    for k in range(max(1, args.repeats - 1) + 1):
        for name, fn in rows if not args.skip_plain_batched else rows[:4]:
            gen[name].append(timed(fn, device))
            print(f"  (round {k}{' warm-up' if k == 0 else ''}: {name} {gen[name][-1]:.1f} s)")
            sys.stdout.flush()
    gmed = {k: statistics.median(v[1:]) for k, v in gen.items() if len(v) > 1}
    print(
        f"\ngeneration, {args.batch} trials × up to {args.new_tokens} "
        f"sampled tokens (median of {len(gen['plain loop']) - 1}):"
    )
    for k, v in gmed.items():
        print(
            f"  {k:<24} {v:8.2f} s   {args.batch / v:7.2f} trials/s   "
            f"{counts[k] / v:8.1f} tokens/s ({counts[k]} tokens)"
        )
    for k in [k for k in gmed if k != "plain loop"]:
        print(
            f"  ratio {k} / one at a time: {gmed['plain loop'] / gmed[k]:.2f} (trials/s), "
            f"{(counts[k] / gmed[k]) / (counts['plain loop'] / gmed['plain loop']):.2f} (tokens/s)"
        )


def protocol_generation(args, model, device) -> None:
    """The protocol workload: whole batches of the default ``injected-thoughts`` run (the
    paper's prompt, concept vectors at five layers × four strengths, controls; 100 tokens at
    temperature 1, ending at the end-of-sequence token), each trial with its own injection, as
    the runner builds them. One at a time each trial stops at its own end; a batch runs until
    its longest answer ends, unless finished rows are dropped (``prune``)."""
    from _protocol import protocol_trials

    from mechintro import engine
    from mechintro.arch import get_module
    from mechintro.runner import batch_seed

    config, trials, injections, prefix = protocol_trials(model)  # prefix: as the runner decides
    size, n_batches = args.batch, -(-len(trials) // args.batch)
    chosen = [int(b) for b in args.protocol_batches.split(",")]
    if not all(0 <= b < n_batches for b in chosen):
        raise SystemExit(f"--protocol-batches: the run has batches 0 to {n_batches - 1}")
    eos = engine._eos_ids(model)
    blocks = get_module(model.hf, model.arch.layers)
    most = config.max_new_tokens

    def plain_one(i: int, temperature: float, seed: int) -> list[int]:
        """One trial alone: transformers' generate with forward hooks adding its injection."""
        inj, ids = injections[i], torch.tensor([trials[i].prompt.input_ids], device=device)
        handles = []
        if inj is not None:
            per_layer = inj.vector if inj.vector.ndim == 2 else inj.vector[None]
            mask = torch.tensor(inj.mask, dtype=model.dtype, device=device)[None, :, None]
            for k, layer in enumerate(inj.layers):
                vec = per_layer[min(k, len(per_layer) - 1)].to(device, model.dtype)

                def hook(_m, _a, out, vec=vec):
                    h = out[0] if isinstance(out, tuple) else out
                    if h.shape[1] == mask.shape[1]:  # the prompt pass
                        h = h + mask * vec
                    elif inj.generated:
                        h = h + vec
                    return (h, *out[1:]) if isinstance(out, tuple) else h

                handles.append(blocks[layer].register_forward_hook(hook))
        gen_config = engine._generation_config(model, eos, temperature, most)
        try:
            with torch.no_grad():
                torch.manual_seed(seed)
                out = model.hf.generate(
                    ids, attention_mask=torch.ones_like(ids), generation_config=gen_config
                )
        finally:
            for h in handles:
                h.remove()
        return out[0, ids.shape[1] :].tolist()

    def answer(tokens: list[int]) -> list[int]:
        cut = next((j + 1 for j, t in enumerate(tokens) if t in eos), len(tokens))
        return [t for t in tokens[:cut] if t >= 0]

    def engine_batch(b: int, temperature: float, prune: bool, rows=None) -> list[list[int]]:
        rows = rows or list(range(b * size, min((b + 1) * size, len(trials))))
        res = engine.generate(
            model,
            [trials[i].prompt.input_ids for i in rows],
            [injections[i] for i in rows],
            max_new_tokens=most,
            temperature=temperature,
            seed=batch_seed(config.seed, b),
            prefix=prefix,
            prune=prune,
        )
        return [answer(r) for r in res.generated.tolist()]

    rows_of = {b: list(range(b * size, min((b + 1) * size, len(trials)))) for b in chosen}
    n_trials = sum(len(r) for r in rows_of.values())
    print(
        f"\nprotocol workload: batches {chosen} of the default injected-thoughts run "
        f"({len(trials)} trials, batch {size}): {n_trials} trials, up to {most} tokens at "
        f"temperature {config.temperature}, shared prefix {prefix} tokens"
    )
    if args.check_greedy:
        first = rows_of[chosen[0]][: args.check_greedy]
        alone = [answer(plain_one(i, 0.0, 0)) for i in first]
        together = engine_batch(chosen[0], 0.0, True, first)
        kept = engine_batch(chosen[0], 0.0, False, first)
        print(
            f"check, greedy, {len(first)} trials: one at a time = engine pruned for "
            f"{sum(a == t for a, t in zip(alone, together, strict=True))}/{len(first)}, "
            f"engine pruned = engine unpruned for "
            f"{sum(k == t for k, t in zip(kept, together, strict=True))}/{len(first)} "
            f"(lengths {[len(a) for a in alone]})"
        )
    counts: dict[str, list[int]] = {}
    answers: dict[str, list[list[int]]] = {}

    def plain_loop():
        got = [answer(plain_one(i, config.temperature, i)) for r in rows_of.values() for i in r]
        counts["plain loop"], answers["plain loop"] = [len(a) for a in got], got

    def batched(prune: bool):
        name = "engine + prefix" + (" + pruning" if prune else " (as before)")

        def call():
            got = [a for b in chosen for a in engine_batch(b, config.temperature, prune)]
            counts[name], answers[name] = [len(a) for a in got], got

        return name, call

    rows = (("plain loop", plain_loop), batched(False), batched(True))
    gen: dict[str, list[float]] = {name: [] for name, _ in rows}
    for k in range(max(1, args.repeats - 1) + 1):
        for name, fn in rows:
            gen[name].append(timed(fn, device))
            print(f"  (round {k}{' warm-up' if k == 0 else ''}: {name} {gen[name][-1]:.1f} s)")
            sys.stdout.flush()
    gmed = {k: statistics.median(v[1:]) for k, v in gen.items()}
    before, after = rows[1][0], rows[2][0]
    same = sum(a == b for a, b in zip(answers[before], answers[after], strict=True))
    print(
        f"check, sampled: pruned = unpruned answers for {same}/{n_trials} trials (same seeds); "
        "the plain loop samples each trial with its own seed"
    )
    print(f"generation, protocol workload (median of {len(gen['plain loop']) - 1}):")
    for k, v in gmed.items():
        n = counts[k]
        print(
            f"  {k:<28} {v:8.2f} s   {n_trials / v:7.2f} trials/s   {sum(n) / v:8.1f} tokens/s "
            f"({sum(n)} tokens; mean answer {sum(n) / len(n):.1f}, "
            f"{sum(x >= most for x in n)} of {len(n)} reach {most})"
        )
    for k in (before, after):
        print(
            f"  ratio {k} / one at a time: {gmed['plain loop'] / gmed[k]:.2f} (trials/s), "
            f"{(sum(counts[k]) / gmed[k]) / (sum(counts['plain loop']) / gmed['plain loop']):.2f}"
            " (tokens/s)"
        )
    print(f"  ratio pruning / as before: {gmed[before] / gmed[after]:.2f}")


if __name__ == "__main__":
    script_main(main)
