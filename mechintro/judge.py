"""LLM judges with Lindsey's grader prompts.

Lindsey (2025) grades each response with Claude Sonnet 4 on four criteria — coherence, thinking
about the word, affirmative answer, and affirmative answer followed by correct identification —
each a prompt that ends "End your response with YES or NO" (Lindsey 2025, appendix, experiment 1's
grader prompts; the prompts are in
``mechintro/data/grader_prompts.json``, copied verbatim). A verdict is the last standalone
``YES`` or ``NO`` in the judge's reply; a reply with neither is recorded as ``"ungraded"``, never
guessed.

Backends: :class:`HTTPJudge` for any OpenAI-compatible chat-completions endpoint and
:class:`AnthropicJudge` for Anthropic's Messages API (base URL and model from the caller; the API
key is read from an environment variable at call time, held in no attribute, scrubbed from every
message, and never sent on through a redirect; credentials in the URL are redacted wherever it
is shown or stored), and :class:`ModelJudge` for any model
:func:`mechintro.load_model` can load. :func:`grade_run` grades a saved generation run without
regenerating it, storing each verdict with the judge's identity.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

import numpy as np
import torch
import xarray as xr
import zarr

from mechintro.errors import MechintroError
from mechintro.stimuli import _load

if TYPE_CHECKING:
    from mechintro.models import Model

log = logging.getLogger(__name__)

Criterion = Literal["coherence", "thinking_about_word", "affirmative", "affirmative_identification"]
CRITERIA: tuple[Criterion, ...] = (
    "coherence",
    "thinking_about_word",
    "affirmative",
    "affirmative_identification",
)
Answer = Literal["YES", "NO", "ungraded"]


def grader_prompt(criterion: str, *, question: str, response: str, word: str = "") -> str:
    """Lindsey's grader prompt for ``criterion`` with the trial filled in (``{prompt}`` and
    ``{question}`` are both the question the model was asked)."""
    prompts = _load("grader_prompts.json")
    if criterion not in prompts or criterion.startswith("_"):
        raise MechintroError(f"unknown criterion '{criterion}': choose from {', '.join(CRITERIA)}")
    text = prompts[criterion]
    for key, value in (
        ("prompt", question),
        ("question", question),
        ("response", response),
        ("word", word),
    ):
        text = text.replace("{" + key + "}", value)
    return text


_VERDICT = re.compile(r"\b(YES|NO)\b")


def parse_verdict(reply: str) -> Answer:
    """The last standalone ``YES``/``NO`` (upper case, as the prompts ask) or ``"ungraded"``."""
    found = _VERDICT.findall(reply)
    if not found:
        return "ungraded"
    return "YES" if found[-1] == "YES" else "NO"


class Judge(Protocol):
    identity: str

    def complete(self, prompt: str) -> str: ...


# A query parameter whose name contains one of these carries a secret (api_key, access_token,
# client_secret, password, sig, X-Amz-Signature, X-Amz-Credential, auth, session_id, ...).
_SECRET_PARAM = re.compile(r"key|token|secret|pass|pwd|sig|auth|cred|session", re.IGNORECASE)


def _split(url: str) -> urllib.parse.SplitResult | None:
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        return None
    return parts


def _redact_pairs(text: str) -> str:
    pairs = []
    for pair in text.split("&"):
        name, sep, value = pair.partition("=")
        secret = sep and value and _SECRET_PARAM.search(urllib.parse.unquote_plus(name))
        pairs.append(f"{name}=***" if secret else pair)
    return "&".join(pairs)


def redact_url(url: str) -> str:
    """``url`` without its credentials, fit for attributes, logs and errors: a user name and
    password become ``***@``, and the value of every query (or fragment) parameter whose name
    looks like a secret (key, token, secret, password, signature, auth, credential, session)
    becomes ``***``. A URL that does not parse is replaced whole."""
    parts = _split(url)
    if parts is None:
        return "<a URL that does not parse>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(
        (
            parts.scheme,
            netloc,
            parts.path,
            _redact_pairs(parts.query),
            _redact_pairs(parts.fragment),
        )
    )


def _url_secrets(url: str) -> list[str]:
    """The secret parts of ``url`` as they may appear in any text (raw and percent-decoded)."""
    parts = _split(url)
    if parts is None:
        return [url]
    found = []
    if "@" in parts.netloc:
        found.append(parts.netloc.rpartition("@")[0])
        found += [s for s in (parts.username, parts.password) if s]
    for text in (parts.query, parts.fragment):
        for pair in text.split("&"):
            name, _, value = pair.partition("=")
            if value and _SECRET_PARAM.search(urllib.parse.unquote_plus(name)):
                found += [value, urllib.parse.unquote_plus(value)]
    return found


def _scrub(text: str, *secrets: str) -> str:
    """``text`` with every secret replaced by ``***`` (longest first, so no part of one
    survives). Secrets shorter than 4 characters are left: replacing them would garble the
    text, and :func:`redact_url` already hides them in every URL shown."""
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Follow no redirect: urllib would send the request's headers, the API key among them, to
    whatever host the endpoint names. The 3xx answer becomes an error instead."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _endpoint(base_url: str, path: str) -> str:
    """``base_url`` with ``path`` appended to its path, its query kept."""
    parts = urllib.parse.urlsplit(base_url)
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, parts.path.rstrip("/") + path, parts.query, "")
    )


def _credentials(api_key_env: str, base_url: str) -> tuple[str, str, list[str]]:
    """The API key from ``api_key_env``, the endpoint as it may be shown, and every secret that
    must never be shown (the key and any credentials in the URL)."""
    key = os.environ.get(api_key_env)
    if not key:
        raise MechintroError(
            f"the judge needs an API key: set the environment variable {api_key_env}"
        )
    return key, redact_url(base_url), [key, *_url_secrets(base_url)]


def _check_base_url(base_url: str, flag: str = "--judge-url") -> None:
    parts = _split(base_url)
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise MechintroError(
            f"{flag} {redact_url(base_url)} is not an http(s) URL: give the endpoint's base URL, "
            "e.g. https://api.openai.com/v1"
        )
    if "@" in parts.netloc:
        raise MechintroError(
            f"{flag} {redact_url(base_url)} carries a user name or password: drop it from the "
            "URL and put the key in the environment variable named by --api-key-env (a URL "
            "is stored with the verdicts; the key never is)"
        )


def _post(
    url: str,
    body: dict,
    headers: dict[str, str],
    *,
    shown: str,
    secrets: list[str],
    timeout: float,
    hint: str,
    schema: str,
) -> dict:
    """POST ``body`` as JSON to ``url`` (no redirects followed) and return the JSON answer.
    Every error names the endpoint as ``shown`` and has ``secrets`` scrubbed."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with _OPENER.open(request, timeout=timeout) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            target = exc.headers.get("Location", "") if exc.headers else ""
            where = _split(urllib.parse.urljoin(url, target)) if target else None
            host = f" to {where.hostname}" if where is not None and where.hostname else ""
            message = (
                f"judge endpoint {shown} answered HTTP {exc.code} (a redirect{host}): mechintro "
                "follows no redirect, which would send the API key to another address; give "
                "the endpoint's final URL"
            )
        else:
            message = f"judge endpoint {shown} answered HTTP {exc.code} ({exc.reason}): {hint}"
        raise MechintroError(_scrub(message, *secrets)) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MechintroError(
            _scrub(
                f"judge endpoint {shown} is unreachable ({reason}): check the URL and your network",
                *secrets,
            )
        ) from None
    except json.JSONDecodeError:
        raise MechintroError(f"judge endpoint {shown} did not answer JSON: {schema}") from None


@dataclass(frozen=True, kw_only=True)
class _EndpointJudge:
    """What the HTTP judges share: the endpoint (its URL checked when made, redacted from the
    identity, ``repr`` and every error), the model name, the key's environment variable (read on
    each call, never stored), the timeout and the reply's length; ``complete`` posts the request
    a judge builds (:meth:`_request`) and reads the reply's text (:meth:`_text`)."""

    base_url: str = field(repr=False)
    model: str
    api_key_env: str
    timeout: float = 60.0
    max_tokens: int = 1024

    KIND: ClassVar[str]
    """the identity's prefix"""
    SCHEMA: ClassVar[str]
    """the question a malformed reply's error asks"""
    REPLY: ClassVar[str]
    """where the reply's text should be"""
    REPR: ClassVar[tuple[str, ...]] = ("model", "base_url", "api_key_env")

    def __post_init__(self) -> None:
        _check_base_url(self.base_url)

    def __repr__(self) -> str:
        shown = {"model": self.model, "base_url": redact_url(self.base_url)}
        shown["api_key_env"] = self.api_key_env
        return f"{type(self).__name__}({', '.join(f'{k}={shown[k]!r}' for k in self.REPR)})"

    @property
    def identity(self) -> str:
        return f"{self.KIND}:{self.model}@{redact_url(self.base_url)}"

    def _request(self, prompt: str, key: str) -> tuple[str, dict, dict[str, str]]:
        """The URL, JSON body and headers that ask the judge ``prompt``."""
        raise NotImplementedError

    def _text(self, payload: object) -> str | None:
        """The reply's text (``None``: the payload has none)."""
        raise NotImplementedError

    def complete(self, prompt: str) -> str:
        key, shown, secrets = _credentials(self.api_key_env, self.base_url)
        url, body, headers = self._request(prompt, key)
        payload = _post(
            url,
            body,
            headers,
            shown=shown,
            secrets=secrets,
            timeout=self.timeout,
            hint=f"check the URL, the model name and the key in ${self.api_key_env}",
            schema=self.SCHEMA,
        )
        text = self._text(payload)
        if text is None:
            raise MechintroError(
                f"judge endpoint {shown} answered without {self.REPLY}: {self.SCHEMA}"
            )
        return _scrub(text, *secrets)


@dataclass(frozen=True, kw_only=True, repr=False)
class HTTPJudge(_EndpointJudge):
    """An OpenAI-compatible ``/chat/completions`` endpoint, at temperature 0.

    The key is read from ``api_key_env`` on each call and never stored on the object; it is sent
    as a ``Bearer`` header, and no redirect is followed (urllib would send it on to the new
    address). Credentials in ``base_url`` (a user name and password are refused; query
    parameters such as ``?api_key=`` are sent) are redacted from the identity stored with the
    verdicts, from ``repr`` and from every error.
    """

    api_key_env: str = "OPENAI_API_KEY"

    KIND: ClassVar[str] = "openai-compatible"
    SCHEMA: ClassVar[str] = "is it OpenAI-compatible?"
    REPLY: ClassVar[str] = "choices[0].message.content"
    REPR: ClassVar[tuple[str, ...]] = ("base_url", "model", "api_key_env")

    def _request(self, prompt: str, key: str) -> tuple[str, dict, dict[str, str]]:
        body = {
            "model": self.model,
            "temperature": 0,
            "max_tokens": self.max_tokens,
            "messages": [{"role": "user", "content": prompt}],
        }
        url = _endpoint(self.base_url, "/chat/completions")
        return url, body, {"Authorization": f"Bearer {key}"}

    def _text(self, payload: object) -> str | None:
        try:
            return str(payload["choices"][0]["message"]["content"])  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return None


ANTHROPIC_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True, kw_only=True, repr=False)
class AnthropicJudge(_EndpointJudge):
    """Anthropic's Messages API (``POST /v1/messages``), the kind of judge Lindsey used (Claude
    Sonnet 4), at temperature 0.

    The request carries the key in an ``x-api-key`` header and ``anthropic-version``
    (:data:`ANTHROPIC_VERSION`); the body is ``{model, max_tokens, temperature, messages: [{role:
    "user", content: prompt}]}``, with ``system`` when one is given; the reply is the first
    ``text`` block of ``content``. ``base_url`` is the API's root (``https://api.anthropic.com``;
    one that ends in ``/v1`` is accepted too). As :class:`HTTPJudge`: the key is read from
    ``api_key_env`` on each call, never stored, never in a message; no redirect is followed;
    credentials in the URL are redacted from the identity and every error.
    """

    base_url: str = field(default=ANTHROPIC_URL, repr=False)
    api_key_env: str = "ANTHROPIC_API_KEY"
    system: str | None = None

    KIND: ClassVar[str] = "anthropic"
    SCHEMA: ClassVar[str] = "is it Anthropic's Messages API?"
    REPLY: ClassVar[str] = "a text block in content"

    def _request(self, prompt: str, key: str) -> tuple[str, dict, dict[str, str]]:
        path = urllib.parse.urlsplit(self.base_url).path.rstrip("/")
        body: dict = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": 0,
            "messages": [{"role": "user", "content": prompt}],
        }
        if self.system is not None:
            body["system"] = self.system
        url = _endpoint(self.base_url, "/messages" if path.endswith("/v1") else "/v1/messages")
        return url, body, {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}

    def _text(self, payload: object) -> str | None:
        blocks = payload.get("content") if isinstance(payload, dict) else None
        texts = [
            b["text"]
            for b in (blocks if isinstance(blocks, list) else [])
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        ]
        return texts[0] if texts else None


@dataclass(frozen=True, kw_only=True, eq=False)
class ModelJudge:
    """A local model as judge (no injection).

    ``readout="generate"`` (Lindsey's procedure): greedy decoding of up to ``max_new_tokens``,
    the verdict parsed from the reply. ``readout="first-token"``: one forward pass, the verdict
    is whichever of YES or NO (summed over the single-token spellings ``YES``, ``Yes``, with and
    without a leading space) is more probable as the reply's first token — for small local
    models, which are slow to reason at length on a CPU; the prompt is unchanged, so a model
    that would reason first is cut short, and the reply says so.
    """

    model: Model
    max_new_tokens: int = 256
    readout: Literal["generate", "first-token"] = "generate"

    def __post_init__(self) -> None:
        if self.readout not in ("generate", "first-token"):
            raise MechintroError(
                f"unknown judge readout '{self.readout}': choose generate or first-token"
            )

    @property
    def identity(self) -> str:
        m = self.model
        tail = "" if self.readout == "generate" else f" ({self.readout})"
        return f"model:{m.name}@{m.weights_sha256[:12]}{tail}"

    def complete(self, prompt: str) -> str:
        from mechintro import engine
        from mechintro.prompts import render_chat, tokenize

        m = self.model
        ids = tokenize(
            m.tokenizer, render_chat(m.tokenizer, [{"role": "user", "content": prompt}])
        ).input_ids
        if self.readout == "first-token":
            yes, no = verdict_token_ids(m.tokenizer)
            lp = engine.run_batch(m, [ids], [[]], [engine.NextToken((*yes, *no))]).answer_logprobs
            assert lp is not None
            lp_yes = float(torch.logsumexp(lp[0, : len(yes)], 0))
            lp_no = float(torch.logsumexp(lp[0, len(yes) :], 0))
            return f"first-token readout: log P(yes) {lp_yes:.3f}, log P(no) {lp_no:.3f} -> " + (
                "YES" if lp_yes > lp_no else "NO"
            )
        greedy = engine.Generate(self.max_new_tokens, temperature=0.0, seed=0)
        generated = engine.run_batch(m, [ids], [[]], [greedy]).generated
        assert generated is not None  # a Generate readout fills it
        kept = [t for t in generated[0].tolist() if t >= 0]
        return str(m.tokenizer.decode(kept, skip_special_tokens=True))


VERDICT_FORMS = {"YES": ("YES", " YES", "Yes", " Yes"), "NO": ("NO", " NO", "No", " No")}


def verdict_token_ids(tokenizer: object) -> tuple[list[int], list[int]]:
    """Single-token spellings of the verdicts YES and NO (:data:`VERDICT_FORMS`) in
    ``tokenizer``'s vocabulary, resolved as the runner resolves answer tokens."""
    from mechintro.runner import Answers

    _, labels, ids = Answers(forms=VERDICT_FORMS).resolve(tokenizer)
    return (
        [t for t, label in zip(ids, labels, strict=True) if label == "YES"],
        [t for t, label in zip(ids, labels, strict=True) if label == "NO"],
    )


@dataclass(frozen=True)
class Verdict:
    criterion: str
    answer: Answer
    reply: str
    judge: str


def grade(judge: Judge, criterion: str, *, question: str, response: str, word: str = "") -> Verdict:
    """One verdict from ``judge`` on one response."""
    reply = judge.complete(
        grader_prompt(criterion, question=question, response=response, word=word)
    )
    verdict = parse_verdict(reply)
    if verdict == "ungraded":
        log.warning("judge reply for %s has no YES/NO; recorded as ungraded", criterion)
    return Verdict(criterion=criterion, answer=verdict, reply=reply, judge=judge.identity)


def grade_run(
    path: str | Path,
    judge: Judge,
    *,
    criteria: Sequence[str] = CRITERIA,
    progress: Callable[[int, int], None] | bool | None = None,
) -> xr.Dataset:
    """Grade every committed trial of a saved generation run and store the verdicts in it.

    Adds ``grade_{criterion}`` (``YES``/``NO``/``ungraded``/``""`` for uncommitted trials) and
    ``grade_{criterion}_reply`` per trial, and the attribute ``judge_{criterion}`` naming the
    judge. The question is the trial's ``question`` label; the word is the lowercased
    ``concept``. Returns the verdicts.

    Verdicts are stored batch by batch under the run's commit protocol: a batch's verdicts are
    written, then its ``graded`` flags, in a separate write. A grading run that is stopped (a
    kill, a judge outage) resumes where it stopped when started again with the same judge and
    criteria; a finished grading, or one with another judge or criteria, is done again from the
    start (the earlier verdicts of those criteria are overwritten).
    """
    from mechintro import runs
    from mechintro._fs import store_lock
    from mechintro.runs import open_run

    ds = open_run(path, committed_only=False)
    if "response" not in ds:
        raise MechintroError(
            f"{path} stores no responses (it reads {', '.join(runs.readout_variables(ds.attrs))}); "
            "only generation runs have responses to grade"
        )
    if "question" not in ds.coords:
        raise MechintroError(
            f"{path} stores no `question` per trial, which the grader "
            "prompts need: grade runs of experiments that record it"
        )
    with store_lock(path):
        return _grade_batches(Path(path), ds, judge, list(criteria), progress)


def _grade_batches(
    path: Path,
    ds: xr.Dataset,
    judge: Judge,
    criteria: list[str],
    progress: Callable[[int, int], None] | None,
) -> xr.Dataset:
    from mechintro import runs

    committed = np.asarray(ds["committed"].values, dtype=bool)
    questions, responses, concepts = (
        ds["question"].values,
        ds["response"].values,
        ds["concept"].values,
    )
    n = committed.size
    size = min(int(ds.attrs["batch_size"]), n)
    names = [f"grade_{c}" for c in criteria] + [f"grade_{c}_reply" for c in criteria]
    task = json.dumps({"judge": judge.identity, "criteria": criteria})
    resuming = (
        ds.attrs.get("grading") == task
        and ds.attrs.get("grading_complete") == "false"
        and "graded" in ds
        and all(name in ds for name in names)
    )
    graded = np.asarray(ds["graded"].values, dtype=bool) if resuming else np.zeros(n, dtype=bool)
    if resuming:
        log.info(
            "%s: resuming grading (%d of %d trials graded)",
            path,
            int((graded & committed).sum()),
            int(committed.sum()),
        )
    created = resuming
    todo = int(committed.sum())
    done = int((graded & committed).sum())
    from mechintro.progress import callback

    progress, close_bar = callback(progress, "grade", "trial")  # a bar unless progress=False
    if progress:
        progress(done, todo)
    for start in range(0, n, size):
        stop = min(start + size, n)
        rows = [i for i in range(start, stop) if committed[i] and not graded[i]]
        if not rows:
            continue
        verdicts = {c: np.full(stop - start, "", dtype=object) for c in criteria}
        replies = {c: np.full(stop - start, "", dtype=object) for c in criteria}
        if resuming:  # keep the batch's verdicts already stored (trials committed since are new)
            for c in criteria:
                verdicts[c][:] = ds[f"grade_{c}"].values[start:stop]
                replies[c][:] = ds[f"grade_{c}_reply"].values[start:stop]
        for i in rows:
            for c in criteria:
                v = grade(
                    judge,
                    c,
                    question=str(questions[i]),
                    response=str(responses[i]),
                    word=str(concepts[i]).lower(),
                )
                verdicts[c][i - start], replies[c][i - start] = v.answer, v.reply
        if (
            not created
        ):  # the first batch graded: allocate the variables (nothing half-written before)
            _allocate_grades(path, n, size, criteria, task)
            created = True
        # The verdicts, their chunks' digests, then the commit flag, in a separate, later write:
        # a kill before it leaves the batch ungraded.
        runs.commit_region(
            path,
            start,
            {f"grade_{c}": (("trial",), verdicts[c]) for c in criteria}
            | {f"grade_{c}_reply": (("trial",), replies[c]) for c in criteria},
            flag="graded",
        )
        done += len(rows)
        if progress:
            progress(done, todo)
    if not created:  # nothing committed to grade: still record empty verdicts
        _allocate_grades(path, n, size, criteria, task)
    runs.set_root_attrs(
        path, {f"judge_{c}": judge.identity for c in criteria} | {"grading_complete": "true"}
    )
    close_bar()
    stored = xr.open_zarr(path, consolidated=False, zarr_format=3)
    return xr.Dataset({name: (("trial",), stored[name].values.astype(object)) for name in names})


def _allocate_grades(path: Path, n: int, size: int, criteria: list[str], task: str) -> None:
    """Create (or reset) the verdict variables, all empty and ungraded, in one append."""
    from mechintro import runs

    empty = {
        name: (("trial",), np.full(n, "", dtype=object))
        for c in criteria
        for name in (f"grade_{c}", f"grade_{c}_reply")
    }
    out = xr.Dataset(empty | {"graded": (("trial",), np.zeros(n, dtype=bool))})
    group = zarr.open_group(str(path), mode="r+")
    for (
        name
    ) in out.data_vars:  # a new grading replaces the earlier variables of these criteria whole
        if name in group:
            del group[name]
    # xarray's append mode replaces the group's attributes with the written dataset's: carry the
    # run's own attributes along, so provenance is rewritten whole, in one atomic metadata write.
    out.attrs = dict(group.attrs) | {"grading": task, "grading_complete": "false"}
    encoding = {name: {"chunks": (size,)} for name in out.data_vars}
    out.to_zarr(path, mode="a", consolidated=False, encoding=encoding)
    runs.register_arrays(path, [str(name) for name in out.data_vars], flag="graded")
