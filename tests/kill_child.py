"""Child process for the kill tests: runs a small experiment on a tiny seeded model into a store.

    python -m tests.kill_child OUT MODE RECORD     (MODE: logits | generate; RECORD: 0 | 1)

Deterministic: the model, the trials and the seeds are the same in every process, so a run
killed at any point and started again must finish identical to an uninterrupted one.
"""

from __future__ import annotations

import sys

import torch

# the tiny model's classes, imported here so that the test's fork server holds them: transformers
# imports a model's module on first use (≈ 4 CPU-s), which every forked child would pay again
import transformers.models.llama.modeling_llama  # noqa: F401

from mechintro import runner
from mechintro.prompts import Window, render_chat, tokenize
from tests.conftest import build_tiny


def trials(model) -> list[runner.Trial]:
    out = []
    g = torch.Generator().manual_seed(1)
    vectors = torch.randn(4, model.d_model, generator=g) * 4
    for i in range(24):
        text = render_chat(
            model.tokenizer, [{"role": "user", "content": f"Trial {i}: do you detect a thought?"}]
        )
        prompt = tokenize(model.tokenizer, text)
        injected = i % 3 != 0
        out.append(
            runner.Trial(
                prompt=prompt,
                condition="injected" if injected else "control",
                concept=f"c{i % 4}" if injected else "",
                strength=float(1 + i % 4),
                inject_layer=i % 3,
                inject_layer_end=i % 3 + 1,
                vector=vectors[i % 4] if injected else None,
                window=Window.from_marker("Trial", generated=True),
            )
        )
    return out


def main(out: str, mode: str, record: str, ready=None) -> None:
    """The run; ``ready()`` is called once the model is built, just before the run starts."""
    model = build_tiny("llama")
    if ready is not None:
        ready()
    runner.execute(
        model,
        trials(model),
        out,
        config={"kill_test": mode, "record": record},
        mode=mode,
        answers=runner.YES_NO if mode == "logits" else None,
        generation=runner.Generation(max_new_tokens=12, temperature=1.0)
        if mode == "generate"
        else None,
        batch_size=2,
        record=record == "1",
        seed=7,
    )


def forked(out: str, mode: str, record: str, conn) -> None:
    """The child as tests/unit/test_kill.py starts it: forked from a server that has already
    imported torch and mechintro, so that no kill lands in an interpreter's start-up and no
    child pays for one. ``conn`` gets ``"ready"`` when the run starts, then ``"done"`` or the
    error's one line (exit status 1)."""
    try:
        main(out, mode, record, ready=lambda: conn.send("ready"))
    except Exception as exc:  # e.g. the lock's refusal: the parent reads the line
        conn.send(f"{type(exc).__name__}: {exc}")
        raise SystemExit(1) from None
    conn.send("done")


if __name__ == "__main__":
    # one line on stdout when the run starts: the kill tests time their kills from it, so that a
    # kill lands in the run, not in the interpreter's start-up
    main(*sys.argv[1:4], ready=lambda: print("ready", flush=True))
