"""A run's trials in the formats the field shares data in: a pandas DataFrame (one row per
trial, labelled), Parquet, and a Hugging Face ``datasets.Dataset``, each carrying the run's
provenance.

    df = mi.to_dataframe(ds)                            # pandas: coordinates, readouts, responses
    mi.to_parquet(ds, "run.parquet")                    # needs pyarrow (mechintro[export])
    hf = mi.to_hf_dataset(ds, layers=[9, 15])           # needs datasets (mechintro[export])

Columns: every per-trial coordinate (``concept``, ``condition``, ``strength``, ``inject_layer``,
...), every per-trial variable (``response``, ``nonfinite``, the judge's ``grade_*`` verdicts
when the run was graded), for a logits run the log-probability of each answer form
(``logprob[ yes]``) and, with yes/no answers, :func:`mechintro.readouts.yes_no` (``p_yes``,
``p_no``, ``mass``, ``p_yes_norm``, ``logit_diff``); with ``prompts=True`` the decoded prompt.
Residual streams are never put in the DataFrame; :func:`to_hf_dataset` adds the residual at the
last prompt token of the layers asked for.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from mechintro.errors import MechintroError
from mechintro.provenance import RUN_PROVENANCE

# the run attributes every export carries
PROVENANCE = RUN_PROVENANCE
_SKIP = {"digest", "committed"}  # bookkeeping of the commit protocol, not data
EXTRA = "pip install 'mechintro[export]'"


def provenance(ds: xr.Dataset) -> dict[str, str]:
    """The run's provenance attributes (those it has)."""
    return {k: str(ds.attrs[k]) for k in PROVENANCE if k in ds.attrs}


def _check(ds: object) -> xr.Dataset:
    if not isinstance(ds, xr.Dataset) or "trial" not in getattr(ds, "dims", ()):
        raise MechintroError(
            f"expected a run opened with mi.open_run(path), got {type(ds).__name__}"
        )
    return ds


def _prompts(ds: xr.Dataset, tokenizer: Any) -> list[str]:
    if tokenizer is None:
        from mechintro.transcripts import _tokenizer_for

        tokenizer = _tokenizer_for(str(ds.attrs.get("model", "")))
    if tokenizer is None:
        raise MechintroError(
            f"no local tokenizer for {ds.attrs.get('model')!r} to decode the prompts: pass "
            "tokenizer=model.tokenizer, or prompts=False"
        )
    ids = np.asarray(ds.input_ids.values)
    mask = np.asarray(ds.attention_mask.values).astype(bool)
    cache: dict[tuple[int, ...], str] = {}  # trials share prompts: decode each once
    out = []
    for row, keep in zip(ids, mask, strict=True):
        key = tuple(int(t) for t in row[keep])
        if key not in cache:
            cache[key] = tokenizer.decode(list(key))
        out.append(cache[key])
    return out


def to_dataframe(ds: xr.Dataset, *, prompts: bool = False, tokenizer: Any = None):
    """One row per trial (index ``trial``), labelled columns (see the module docstring); the
    run's provenance in ``DataFrame.attrs``. ``prompts=True`` decodes each trial's prompt with
    ``tokenizer`` (default: the run's model's tokenizer, from local files)."""
    import pandas as pd

    ds = _check(ds)
    columns: dict[str, Any] = {}
    for name, var in {**ds.coords, **ds.data_vars}.items():
        if var.dims == ("trial",) and name != "trial" and name not in _SKIP:
            values = var.values
            columns[str(name)] = (
                [str(v) for v in values] if values.dtype.kind in "OTU" else np.asarray(values)
            )
    if "answer_logprobs" in ds:
        logprobs = np.asarray(ds.answer_logprobs.values, dtype=np.float32)
        for k, form in enumerate(ds.answer.values):
            columns[f"logprob[{form}]"] = logprobs[:, k]
        labels = {str(v) for v in ds.answer_label.values}
        if {"yes", "no"} <= labels:
            from mechintro.readouts import yes_no

            for name, var in yes_no(ds).data_vars.items():
                columns[str(name)] = np.asarray(var.values)
    if prompts:
        columns["prompt"] = _prompts(ds, tokenizer)
    frame = pd.DataFrame(columns, index=pd.Index(np.asarray(ds.trial.values), name="trial"))
    frame.attrs = provenance(ds)
    return frame


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MechintroError(
            f"this export needs {module}, which is not installed: {EXTRA}"
        ) from None


def _fresh(path: str | Path) -> Path:
    path = Path(path)
    if path.exists():
        raise MechintroError(f"{path} already exists: choose another path or delete it")
    if not path.parent.is_dir():
        raise MechintroError(f"{path.parent} is not a folder: create it first")
    return path


def to_parquet(
    ds: xr.Dataset, path: str | Path, *, prompts: bool = False, tokenizer: Any = None
) -> Path:
    """:func:`to_dataframe` written to ``path`` as Parquet, the run's provenance in the file's
    schema metadata (key ``mechintro``; ``pyarrow.parquet.read_schema(path).metadata``). Written
    to a temporary name and renamed: never a partial file. Needs pyarrow (``mechintro[export]``).
    """
    pa = _need("pyarrow")
    pq = _need("pyarrow.parquet")
    path = _fresh(path)
    frame = to_dataframe(ds, prompts=prompts, tokenizer=tokenizer)
    table = pa.Table.from_pandas(frame)
    meta = dict(table.schema.metadata or {})
    meta[b"mechintro"] = json.dumps(frame.attrs, sort_keys=True).encode()
    table = table.replace_schema_metadata(meta)
    partial = path.with_name(f".{path.name}.partial")
    try:
        pq.write_table(table, partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def read_provenance(path: str | Path) -> dict[str, str]:
    """The provenance :func:`to_parquet` stored in a Parquet file."""
    pq = _need("pyarrow.parquet")
    return json.loads(pq.read_schema(path).metadata[b"mechintro"])


def to_hf_dataset(
    ds: xr.Dataset,
    *,
    layers: list[int] | tuple[int, ...] = (),
    prompts: bool = True,
    tokenizer: Any = None,
):
    """The run's trials as a Hugging Face ``datasets.Dataset``: the columns of
    :func:`to_dataframe` (with the decoded ``prompt``), and for each of ``layers`` a column
    ``resid_layer_{L}``: the residual stream at the last prompt token after block ``L``
    (float32, ``d_model`` values; needs a run recorded with residuals). The run's provenance is
    ``dataset.info.description`` (JSON). Share it with ``dataset.push_to_hub(...)`` or
    ``dataset.save_to_disk(...)``. Needs datasets (``mechintro[export]``)."""
    datasets = _need("datasets")
    ds = _check(ds)
    layers = [int(v) for v in layers]
    if layers:
        if "resid" not in ds:
            raise MechintroError(
                "this run has no residual streams: export without layers=, or run it with "
                "residuals recorded"
            )
        missing = sorted(set(layers) - {int(v) for v in ds.layer.values})
        if missing:
            raise MechintroError(
                f"layers {missing} are not in this run: it recorded {list(map(int, ds.layer))}"
            )
    frame = to_dataframe(ds, prompts=prompts, tokenizer=tokenizer)
    for layer in layers:  # the last prompt token is pos = P-1 in every trial (right-aligned)
        last = ds.resid.sel(layer=layer).isel(pos=-1).values.astype(np.float32)
        frame[f"resid_layer_{layer}"] = list(last)
    description = json.dumps({"mechintro_run": frame.attrs}, sort_keys=True)
    table = datasets.table.InMemoryTable.from_pandas(df=frame.reset_index(), preserve_index=False)
    # the fingerprint from what the rows are (the run, the columns, their number), not from
    # datasets hashing the table with its own serialiser (which fails on some pyarrow types)
    fingerprint = hashlib.sha256(
        json.dumps([description, list(table.column_names), table.num_rows]).encode()
    ).hexdigest()[:16]
    return datasets.Dataset(
        table, info=datasets.DatasetInfo(description=description), fingerprint=fingerprint
    )
