"""LoRA finetuning at CPU scale: a generic trainer on (prompt, answer) pairs.

:func:`finetune` trains a LoRA adapter (``peft``) on chat examples — the prompt as the user turn,
the answer as the assistant turn, loss on the answer tokens only — seeded (adapter initialisation
and example order), checkpointed every ``checkpoint_every`` steps into ``OUT.partial`` so a killed
run resumes where it stopped, and moved to ``OUT`` only when finished, with ``training.json``
(provenance: base weights, the run the examples came from, the examples' sha256, settings,
losses, time). :func:`apply_adapter` merges an adapter into a model for evaluation and refuses one
trained on other weights.

The module knows nothing about any study: the examples come from the caller. Self-prediction
(Binder et al. 2024, "Looking Inward") draws them from a run with
:func:`mechintro.looking_inward.tasks.training_examples` (``mechintro train``); activation oracles
from :mod:`mechintro.oracle.train`, steering the forward pass with ``steer``.

Defaults against Looking Inward's (Llama 3.1 70B: LoRA rank 32, batch 16, 1 epoch, lr 2e-5, ~30k
examples): rank 8, batch 8, 1 epoch, lr 2e-4, a few hundred examples — sizes that train on two CPU
cores in minutes (docs/looking-inward.md).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import xarray as xr

from mechintro.config import check_config
from mechintro.errors import MechintroError
from mechintro.models import Model, load_model, sha256_of
from mechintro.prompts import render_chat
from mechintro.provenance import provenance_attrs

TRAINING_FILE = "training.json"


@dataclass(frozen=True, kw_only=True)
class LoraSettings:
    """The settings of a LoRA training run that every trainer's config declares (a study's
    config redeclares the defaults it changes); :meth:`lora` is them as :func:`finetune` takes
    them, checked when the config is made."""

    examples: int = 300
    rank: int = 8
    alpha: int = 16
    learning_rate: float = 2e-4
    batch_size: int = 8
    epochs: int = 1
    seed: int = 0
    checkpoint_every: int = 10

    def __post_init__(self) -> None:
        check_config(self)
        self.lora()  # refuses bad settings before any work

    def lora(self) -> TrainConfig:
        return TrainConfig.of(self)


@dataclass(frozen=True, kw_only=True)
class TrainConfig(LoraSettings):
    """LoRA settings (paper, Llama 70B: rank 32, batch 16, 1 epoch, lr 2e-5)."""

    # the learning-rate schedule: linear warm-up over ``warmup_steps``, then constant, or (with
    # ``cosine_decay``) a cosine down to 0 at the last step; ``max_grad_norm`` > 0 clips the
    # gradients' norm (0: no clipping). The defaults are the constant, unclipped schedule.
    warmup_steps: int = 0
    cosine_decay: bool = False
    max_grad_norm: float = 0.0

    @classmethod
    def of(cls, settings: object) -> TrainConfig:
        """The LoRA settings read from a study's config that declares the same field names
        (``oracle.train.OracleConfig``, ``introspect.train.AwarenessConfig``); a schedule field
        it does not declare keeps its default."""
        return cls(
            **{
                f.name: getattr(settings, f.name)
                for f in dataclasses.fields(cls)
                if hasattr(settings, f.name)
            }
        )

    def lr_at(self, step: int, total: int) -> float:
        """The learning rate of step ``step`` (0-based) of ``total``."""
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        if not self.cosine_decay:
            return self.learning_rate
        span = max(1, total - self.warmup_steps)
        return (
            self.learning_rate * 0.5 * (1 + math.cos(math.pi * (step - self.warmup_steps) / span))
        )

    def __post_init__(self) -> None:
        check_config(self)
        if (
            min(self.examples, self.rank, self.batch_size, self.epochs, self.checkpoint_every) < 1
            or not self.learning_rate > 0
            or self.warmup_steps < 0
            or not self.max_grad_norm >= 0
        ):
            raise MechintroError(
                "examples, rank, batch_size, epochs and checkpoint_every must be at least 1, "
                "learning_rate above 0, warmup_steps and max_grad_norm at least 0"
            )


Prompt = str | list[dict[str, str]]  # a user turn, or the chat's turns before the answer


def _turns(prompt: Prompt) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def _encode(model: Model, prompt: Prompt, answer: str) -> tuple[list[int], list[int]]:
    """Token ids of the chat with the answer, and labels: -100 on the prompt, the ids on the answer
    turn. ``prompt`` is the user turn, or the list of turns before the answer (e.g. an empty
    system message first, as Looking Inward's examples have)."""
    head = render_chat(model.tokenizer, _turns(prompt))
    full = model.tokenizer.apply_chat_template(
        [*_turns(prompt), {"role": "assistant", "content": answer}],
        tokenize=False,
        add_generation_prompt=False,
    )
    if not full.startswith(head):
        raise MechintroError(
            "the chat template renders the user turn differently with an answer after it: "
            "cannot mask the prompt"
        )
    ids_head = model.tokenizer(head, add_special_tokens=False)["input_ids"]
    ids = model.tokenizer(full, add_special_tokens=False)["input_ids"]
    k = (
        len(ids_head)
        if ids[: len(ids_head)] == ids_head
        else len(model.tokenizer(head.rstrip(), add_special_tokens=False)["input_ids"])
    )
    return ids, [-100] * k + ids[k:]


def _digest(examples: list[tuple[Prompt, str]]) -> str:
    return hashlib.sha256(json.dumps(examples).encode()).hexdigest()


def _schedule(n: int, config: TrainConfig) -> list[list[int]]:
    """Every step's example indices: each epoch a seeded shuffle cut into batches."""
    order = list(range(n))
    steps_per_epoch = -(-n // config.batch_size)
    schedule: list[list[int]] = []
    for epoch in range(config.epochs):
        random.Random(config.seed * 1000 + epoch).shuffle(order)
        schedule += [
            order[s * config.batch_size : (s + 1) * config.batch_size]
            for s in range(steps_per_epoch)
        ]
    return schedule


def _batch(batch: list[tuple[list[int], list[int]]], pad: int):
    """Input ids, labels and attention mask of one step, right-padded (positions unchanged)."""
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, (x, y) in enumerate(batch):
        ids[r, : len(x)] = torch.tensor(x)
        labels[r, : len(y)] = torch.tensor(y)
        mask[r, : len(x)] = 1
    return ids, labels, mask


def finetune(
    model: Model,
    examples: list[tuple[Prompt, str]],
    out: str | Path,
    config: TrainConfig,
    *,
    behaviour: xr.Dataset | None = None,
    progress=None,
    steer=None,
    extra_record: dict | None = None,
    gradient_checkpointing: bool = False,
) -> Path:
    """Train a LoRA adapter on ``examples`` into ``out`` (resuming ``out.partial`` if present).

    ``model`` itself is not modified (a copy is trained). Returns ``out``.
    ``gradient_checkpointing``: keep only each layer's input during the forward pass and recompute
    the rest in the backward pass — the same adapter (the test checks the losses and weights),
    less memory, more time (the ratio is not measured here); what let Qwen2.5-Coder-1.5B's
    behaviour change train in 24 GB. Not a
    training setting: a checkpoint made without it resumes with it and vice versa.
    ``steer(peft_model, indices)``, if given, is a context manager entered around each step's
    forward pass with the step's example indices (Activation Oracles patch activations there);
    ``extra_record`` is added to ``training.json`` and to the checkpoint's identity.
    """
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    out = Path(out)
    if gradient_checkpointing and steer is not None:
        # the backward pass recomputes the forward outside steer's context, without its patches
        raise MechintroError(
            "gradient checkpointing cannot be combined with steered training: train without it"
        )
    if (out / TRAINING_FILE).exists():
        return out
    if out.exists():
        raise MechintroError(
            f"{out} exists and is not a finished adapter: choose another --out or delete it"
        )
    partial = out.with_name(out.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    digest = _digest(examples)
    if extra_record:
        digest = hashlib.sha256(
            (digest + json.dumps(extra_record, sort_keys=True)).encode()
        ).hexdigest()
    encoded = [_encode(model, p, a) for p, a in examples]
    schedule = _schedule(len(encoded), config)

    torch.manual_seed(config.seed)
    hf = copy.deepcopy(model.hf)
    hf.requires_grad_(False)
    peft_model = lora_model(model, hf, config)
    peft_model.train()
    if gradient_checkpointing:
        # non-reentrant: the frozen base passes no input that requires grad, which the reentrant
        # variant needs to reach the adapters' gradients
        kwargs = {"use_reentrant": False}
        if hasattr(hf, "activation_checkpointing_enable"):  # transformers ≥ 5.x's name
            hf.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    state = {"step": 0, "losses": [], "seconds": 0.0}
    checkpoint = partial / "checkpoint.pt"
    if checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=True)
        if saved["examples_sha256"] != digest or saved["config"] != dataclasses.asdict(config):
            raise MechintroError(
                f"{partial} holds a checkpoint of other examples or settings: delete it or "
                "choose another --out"
            )
        set_peft_model_state_dict(peft_model, saved["adapter"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
    pad = model.tokenizer.pad_token_id
    from mechintro.progress import callback

    progress, close_bar = callback(progress, "train", "step")  # a bar unless progress=False
    start = time.perf_counter() - state["seconds"]
    for step in range(state["step"], len(schedule)):
        ids, labels, mask = _batch([encoded[i] for i in schedule[step]], pad)
        with steer(peft_model, schedule[step]) if steer else contextlib.nullcontext():
            loss = peft_model(
                input_ids=ids, attention_mask=mask, labels=labels, use_cache=False
            ).loss
        loss.backward()
        if config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step, len(schedule))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["losses"].append(loss.item())
        state["step"] = step + 1
        state["seconds"] = time.perf_counter() - start
        if progress:
            progress(step + 1, len(schedule))
        if state["step"] % config.checkpoint_every == 0 and state["step"] < len(schedule):
            scratch = partial / "checkpoint.tmp"
            torch.save(
                {
                    "adapter": get_peft_model_state_dict(peft_model),
                    "optimizer": optimizer.state_dict(),
                    "state": state,
                    "examples_sha256": digest,
                    "config": dataclasses.asdict(config),
                },
                scratch,
            )
            scratch.replace(checkpoint)
    close_bar()
    peft_model.save_pretrained(partial / "adapter")
    for f in (partial / "adapter").iterdir():
        f.replace(partial / f.name)
    (partial / "adapter").rmdir()
    checkpoint.unlink(missing_ok=True)
    record = {
        "base_model": model.name,
        "base_weights_sha256": model.weights_sha256,
        "behaviour_model": behaviour.attrs.get("model", "?") if behaviour is not None else "?",
        "behaviour_weights_sha256": behaviour.attrs.get("weights_sha256", "?")
        if behaviour is not None
        else "?",
        "behaviour_adapter": json.loads(behaviour.attrs.get("config", "{}")).get("adapter", "")
        if behaviour is not None
        else "",
        "examples": len(examples),
        "examples_sha256": digest,
        "config": dataclasses.asdict(config),
        "steps": state["step"],
        "losses": state["losses"],
        "train_seconds": round(state["seconds"], 1),
        **(extra_record or {}),
        **provenance_attrs(),
    }
    (partial / TRAINING_FILE).write_text(json.dumps(record, indent=1))
    partial.rename(out)
    return out


def lora_model(model: Model, hf: torch.nn.Module, config: TrainConfig):
    """``hf`` (``model``'s weights or a copy of them) wrapped in fresh LoRA adapters of
    ``config``'s rank and alpha on every linear projection but the unembedding."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=0.0,
        target_modules="all-linear",
        exclude_modules=[model.arch.unembed],
        task_type="CAUSAL_LM",
    )
    with (
        warnings.catch_warnings()
    ):  # peft asks transformers a deprecated question; nothing for users to do
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        return get_peft_model(hf, lora)


def checkpoint_adapter(model: Model, checkpoint: str | Path, config: TrainConfig):
    """The LoRA model of a :func:`finetune` checkpoint (``OUT.partial/checkpoint.pt``) on a copy
    of ``model``'s weights, and the checkpoint; refuses a checkpoint of other settings."""
    from peft import set_peft_model_state_dict

    saved = torch.load(checkpoint, weights_only=True)
    if saved["config"] != dataclasses.asdict(config):
        raise MechintroError(f"{checkpoint} holds a checkpoint of other settings")
    peft_model = lora_model(model, copy.deepcopy(model.hf), config)
    set_peft_model_state_dict(peft_model, saved["adapter"])
    return peft_model, saved


def read_training(adapter: str | Path) -> dict:
    path = Path(adapter) / TRAINING_FILE
    if not path.exists():
        raise MechintroError(
            f"{adapter} is not a finished mechintro adapter (no {TRAINING_FILE}): train it "
            "with `mechintro train`"
        )
    return json.loads(path.read_text())


def read_study_adapter(path: str | Path, key: str, noun: str, kind: str, command: str) -> dict:
    """The ``training.json`` of the finished adapter at ``path``, refused unless it exists and is
    ``kind`` (its record has ``key``): a study's trained adapter (``noun``: what the error calls
    it; ``command``: what trains one)."""
    if not Path(path).exists():
        raise MechintroError(f"{noun} {path} does not exist: train one with `{command}`")
    record = read_training(path)
    if key not in record:
        raise MechintroError(f"{path} is an adapter but not {kind}: train one with `{command}`")
    return record


def is_adapter(path: str | Path) -> bool:
    """Whether ``path`` is a finished mechintro adapter directory (``training.json`` and peft's
    ``adapter_config.json``)."""
    return (Path(path) / TRAINING_FILE).is_file() and (Path(path) / "adapter_config.json").is_file()


def load_adapted(adapter: str | Path, load: Callable[[str], Model] | None = None) -> Model:
    """The base model ``adapter`` was trained on, loaded by ``load`` (default
    :func:`mechintro.models.load_model`), with the adapter merged in: what every command's
    ``--model ADAPTER`` loads."""
    base = (load or load_model)(read_training(adapter)["base_model"])
    return apply_adapter(base, adapter)


def apply_adapter(model: Model, adapter: str | Path) -> Model:
    """A copy of ``model`` with the LoRA ``adapter`` merged into its weights (``model`` is
    unchanged)."""
    from nnsight.modeling.transformers import TransformersModel
    from peft import PeftModel

    record = read_training(adapter)
    if record["base_weights_sha256"] != model.weights_sha256:
        raise MechintroError(
            f"{adapter} was trained on {record['base_model']} (weights "
            f"{record['base_weights_sha256'][:12]}…), "
            f"not on {model.name}: load that model"
        )
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        merged = PeftModel.from_pretrained(copy.deepcopy(model.hf), str(adapter)).merge_and_unload()
    merged.requires_grad_(False)
    merged.eval()
    adapter_sha = sha256_of([Path(adapter) / "adapter_model.safetensors"])
    identity = hashlib.sha256(f"{model.weights_sha256}+{adapter_sha}".encode()).hexdigest()
    return dataclasses.replace(
        model,
        name=f"{model.name}+{Path(adapter).name}",
        hf=merged,
        lm=TransformersModel(merged, tokenizer=model.tokenizer, task="text-generation"),
        weights_sha256=identity,
    )
