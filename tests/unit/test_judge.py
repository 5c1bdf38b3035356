"""Judges: verbatim prompts, verdict parsing, an OpenAI-compatible endpoint on 127.0.0.1, and an
API key that never reaches errors, logs, datasets or figures."""

from __future__ import annotations

import json
import logging
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
import torch

from mechintro import judge, runner, runs
from mechintro.cli import main
from mechintro.errors import MechintroError
from mechintro.prompts import Window, render_chat, tokenize

KEY = "sk-test-NEVER-WRITE-ME-4242"


class _Handler(BaseHTTPRequestHandler):
    replies: ClassVar[list[str]] = []  # queued replies, shared with the test
    seen: ClassVar[list[dict]] = []  # request bodies received
    paths: ClassVar[list[str]] = []  # request paths (with the query) received

    def do_POST(self):
        _Handler.paths.append(self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            self.send_response(401)
            self.end_headers()
            return
        _Handler.seen.append(body)
        text = _Handler.replies.pop(0) if _Handler.replies else "I think so. YES"
        payload = json.dumps(
            {"choices": [{"message": {"role": "assistant", "content": text}}]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.replies, _Handler.seen, _Handler.paths = [], [], []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_prompts_are_verbatim_and_filled():
    text = judge.grader_prompt(
        "affirmative_identification", question="Q?", response="R.", word="dust"
    )
    assert text.startswith(
        "An AI assistant was asked the question below.\n\n<BEGIN QUESTION>\n\nQ?\n\n<END QUESTION>"
    )
    assert "about the word dust?" in text and "{" not in text
    assert text.endswith("End your response with one word, YES or NO.")
    with pytest.raises(MechintroError, match="unknown criterion"):
        judge.grader_prompt("vibes", question="", response="")


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("Reasoning... YES", "YES"),
        ("YES at first, but NO", "NO"),
        ("no idea", "ungraded"),
        ("NOTHING here", "ungraded"),
    ],
)
def test_parse_verdict(reply, verdict):
    assert judge.parse_verdict(reply) == verdict


def test_http_judge_grades_and_sends_the_key_only_as_a_header(server, monkeypatch):
    monkeypatch.setenv("MECHINTRO_TEST_KEY", KEY)
    j = judge.HTTPJudge(base_url=server, model="judge-1", api_key_env="MECHINTRO_TEST_KEY")
    _Handler.replies = ["The model says it noticed dust. YES", "Hmm."]
    assert (
        judge.grade(j, "affirmative", question="Do you detect?", response="Yes, dust.").answer
        == "YES"
    )
    assert (
        judge.grade(j, "affirmative", question="Do you detect?", response="...").answer
        == "ungraded"
    )
    assert _Handler.seen[0]["model"] == "judge-1" and _Handler.seen[0]["temperature"] == 0
    assert KEY not in json.dumps(_Handler.seen) and KEY not in repr(j) and KEY not in j.identity


def test_unreachable_judge_and_missing_key_are_clear_one_line_errors(monkeypatch, caplog):
    monkeypatch.setenv("MECHINTRO_TEST_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    j = judge.HTTPJudge(
        base_url="http://127.0.0.1:9/v1", model="m", api_key_env="MECHINTRO_TEST_KEY", timeout=5
    )
    with pytest.raises(MechintroError, match="unreachable") as info:
        j.complete("hello")
    assert KEY not in str(info.value) and "\n" not in str(info.value)
    monkeypatch.delenv("MECHINTRO_TEST_KEY")
    with pytest.raises(MechintroError, match="set the environment variable MECHINTRO_TEST_KEY"):
        j.complete("hello")
    assert KEY not in caplog.text


def test_wrong_key_error_does_not_echo_it(server, monkeypatch):
    monkeypatch.setenv("MECHINTRO_TEST_KEY", "sk-wrong-" + KEY)
    with pytest.raises(MechintroError, match="HTTP 401") as info:
        judge.HTTPJudge(base_url=server, model="m", api_key_env="MECHINTRO_TEST_KEY").complete("x")
    assert KEY not in str(info.value)


def _generation_run(tiny, out):
    p = tokenize(
        tiny.tokenizer,
        render_chat(
            tiny.tokenizer,
            [{"role": "user", "content": "Trial 1: Do you detect an injected thought?"}],
        ),
    )
    v = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(0))
    trials = [
        runner.Trial(
            prompt=p,
            condition=c,
            concept="Dust" if c == "injected" else "",
            strength=4.0,
            inject_layer=1,
            inject_layer_end=2,
            vector=v if c == "injected" else None,
            window=Window.from_marker("Trial 1", generated=True),
            labels={"question": "Trial 1: Do you detect an injected thought?"},
        )
        for c in ("injected", "control")
    ]
    return runner.execute(
        tiny,
        trials,
        out,
        config={"g": 1},
        mode="generate",
        generation=runner.Generation(max_new_tokens=8),
        batch_size=2,
        progress=False,
    )


def test_regrade_saved_run_stores_verdicts_and_never_the_key(
    tiny, server, tmp_path, monkeypatch, caplog, capsys
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MECHINTRO_TEST_KEY", KEY)
    out = _generation_run(tiny, tmp_path / "g.zarr")
    argv = [
        "grade",
        str(out),
        "--judge-url",
        server,
        "--judge-model",
        "judge-1",
        "--api-key-env",
        "MECHINTRO_TEST_KEY",
        "--criteria",
        "coherence,affirmative",
    ]
    assert main(["-q", *argv]) == 0
    ds = runs.open_run(out)
    assert (
        ds["grade_coherence"].values.tolist() == ["YES", "YES"]
        and ds.attrs["judge_affirmative"] == f"openai-compatible:judge-1@{server}"
    )
    assert runs.verify(out).ok  # grading adds variables without disturbing the committed trials
    for f in out.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
    assert KEY not in caplog.text and KEY not in capsys.readouterr().err


def test_cli_grade_unreachable_judge(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MECHINTRO_TEST_KEY", KEY)
    out = _generation_run(tiny, tmp_path / "g.zarr")
    code = main(
        [
            "-q",
            "grade",
            str(out),
            "--judge-url",
            "http://127.0.0.1:9/v1",
            "--judge-model",
            "m",
            "--api-key-env",
            "MECHINTRO_TEST_KEY",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "unreachable" in err and KEY not in err and "\n" not in err
    assert "grade_coherence" not in runs.open_run(out)  # nothing half-written


def test_model_judge_runs_locally(tiny):
    v = judge.grade(
        judge.ModelJudge(model=tiny, max_new_tokens=5), "coherence", question="Q", response="R"
    )
    assert v.answer in ("YES", "NO", "ungraded") and v.judge.startswith("model:tiny-llama@")


def test_model_judge_first_token_readout_equals_a_plain_forward(tiny):
    """The first-token verdict is YES vs NO summed over their single-token spellings at the
    rendered prompt's last position, computed here with a plain forward pass."""
    import re

    from mechintro.errors import MechintroError
    from mechintro.prompts import render_chat, tokenize

    j = judge.ModelJudge(model=tiny, readout="first-token")
    v = judge.grade(j, "coherence", question="Q?", response="Yes, I notice it.", word="dust")
    assert v.judge.endswith("(first-token)")
    prompt = judge.grader_prompt("coherence", question="Q?", response="Yes, I notice it.")
    ids = tokenize(
        tiny.tokenizer, render_chat(tiny.tokenizer, [{"role": "user", "content": prompt}])
    )
    with torch.no_grad():
        logits = tiny.hf(torch.tensor([ids.input_ids])).logits[0, -1].float()
    lp = torch.log_softmax(logits, -1)
    yes, no = judge.verdict_token_ids(tiny.tokenizer)
    assert yes and no and not set(yes) & set(no)
    want_yes, want_no = float(torch.logsumexp(lp[yes], 0)), float(torch.logsumexp(lp[no], 0))
    got = [float(x) for x in re.findall(r"log P\((?:yes|no)\) (-?\d+\.\d+)", v.reply)]
    assert got == pytest.approx([want_yes, want_no], abs=2e-3)
    assert v.answer == ("YES" if want_yes > want_no else "NO")
    with pytest.raises(MechintroError, match="unknown judge readout"):
        judge.ModelJudge(model=tiny, readout="last-token")


# --- No redirect is followed with the key (issue 30, row 8) ----------------------------------


class _Elsewhere(BaseHTTPRequestHandler):
    """Another host: records every request that reaches it and answers like a judge."""

    seen: ClassVar[list[tuple[str, dict]]] = []

    def _answer(self):
        _Elsewhere.seen.append((self.command, dict(self.headers)))
        payload = json.dumps({"choices": [{"message": {"content": "Elsewhere says NO"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


class _Redirect(BaseHTTPRequestHandler):
    code: ClassVar[int] = 302
    target: ClassVar[str] = ""

    def _redirect(self):
        self.send_response(_Redirect.code)
        self.send_header("Location", _Redirect.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _redirect

    def log_message(self, *args):
        pass


def _serve(handler):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture()
def redirecting():
    """A judge URL that redirects to a second local server; yields (url, what reached it)."""
    elsewhere, redirect = _serve(_Elsewhere), _serve(_Redirect)
    _Elsewhere.seen = []
    _Redirect.target = f"http://localhost:{elsewhere.server_address[1]}"
    yield f"http://127.0.0.1:{redirect.server_address[1]}/v1", _Elsewhere.seen
    redirect.shutdown()
    elsewhere.shutdown()


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_is_refused_and_the_key_goes_nowhere(code, redirecting, monkeypatch):
    url, reached = redirecting
    monkeypatch.setattr(_Redirect, "code", code)
    monkeypatch.setenv("MECHINTRO_TEST_KEY", KEY)
    j = judge.HTTPJudge(base_url=url, model="m", api_key_env="MECHINTRO_TEST_KEY")
    with pytest.raises(MechintroError, match=rf"HTTP {code} \(a redirect to localhost\)") as info:
        j.complete("hello")
    assert reached == [] and KEY not in str(info.value) and "\n" not in str(info.value)


def test_cli_grade_through_a_redirect_fails_and_stores_nothing(
    tiny, redirecting, tmp_path, monkeypatch, capsys
):
    url, reached = redirecting
    monkeypatch.setenv("MECHINTRO_TEST_KEY", KEY)
    out = _generation_run(tiny, tmp_path / "g.zarr")
    argv = ["grade", str(out), "--judge-url", url, "--judge-model", "m"]
    code = main(["-q", *argv, "--api-key-env", "MECHINTRO_TEST_KEY"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "redirect" in err and "\n" not in err, err
    assert reached == [] and "grade_coherence" not in runs.open_run(out)


# --- Credentials in the judge URL never leave it (issue 30, row 9) ---------------------------

URL_SECRET = "urlsecret-DO-NOT-STORE-777"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://h.example/v1?api_key=S3CRET", "https://h.example/v1?api_key=***"),
        (
            "https://h.example/v1?api-version=2024-06-01&access_token=S3CRET&sig=x%2Fy",
            "https://h.example/v1?api-version=2024-06-01&access_token=***&sig=***",
        ),
        ("http://user:S3CRET@h.example:8080/v1", "http://***@h.example:8080/v1"),
        (
            "https://h.example/v1?X-Amz-Signature=S3CRET&x=1",
            "https://h.example/v1?X-Amz-Signature=***&x=1",
        ),
        ("https://h.example/v1#token=S3CRET", "https://h.example/v1#token=***"),
        ("https://h.example/v1?model=a&key", "https://h.example/v1?model=a&key"),
        ("http://[::1", "<a URL that does not parse>"),
    ],
)
def test_redact_url(url, shown):
    assert judge.redact_url(url) == shown


def test_a_key_in_the_url_is_sent_but_never_stored_logged_or_printed(
    tiny, server, tmp_path, monkeypatch, caplog, capsys
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MECHINTRO_TEST_KEY", KEY)
    out = _generation_run(tiny, tmp_path / "g.zarr")
    url = f"{server}?api-version=1&api_key={URL_SECRET}"
    argv = ["grade", str(out), "--judge-url", url, "--judge-model", "judge-1"]
    argv += ["--api-key-env", "MECHINTRO_TEST_KEY", "--criteria", "coherence"]
    assert main(argv) == 0  # progress and info logs on: they are checked too
    assert _Handler.paths and all(f"api_key={URL_SECRET}" in p for p in _Handler.paths)
    ds = runs.open_run(out)
    assert ds["grade_coherence"].values.tolist() == ["YES", "YES"]
    assert ds.attrs["judge_coherence"] == (
        f"openai-compatible:judge-1@{server}?api-version=1&api_key=***"
    )
    for f in out.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert URL_SECRET.encode() not in data and KEY.encode() not in data, f
    captured = capsys.readouterr()
    assert "api_key=***" in captured.out
    for text in (
        captured.out,
        captured.err,
        caplog.text,
        repr(judge.HTTPJudge(base_url=url, model="m")),
    ):
        assert URL_SECRET not in text and KEY not in text


@pytest.mark.parametrize("where", ["unreachable", "http-error", "redirect"])
def test_errors_do_not_echo_a_key_in_the_url(where, server, redirecting, monkeypatch):
    monkeypatch.setenv("MECHINTRO_TEST_KEY", KEY if where != "http-error" else "sk-wrong")
    base = {
        "unreachable": "http://127.0.0.1:9/v1",
        "http-error": server,
        "redirect": redirecting[0],
    }
    url = f"{base[where]}?token={URL_SECRET}"
    j = judge.HTTPJudge(base_url=url, model="m", api_key_env="MECHINTRO_TEST_KEY", timeout=5)
    with pytest.raises(MechintroError, match="token=\\*\\*\\*") as info:
        j.complete("x")
    assert URL_SECRET not in str(info.value) and KEY not in str(info.value)


def test_a_password_in_the_url_is_refused_without_echoing_it(tiny, server, tmp_path, capsys):
    out = _generation_run(tiny, tmp_path / "g.zarr")
    url = server.replace("http://", f"http://user:{URL_SECRET}@")
    code = main(["grade", str(out), "--judge-url", url, "--judge-model", "judge-1"])
    captured = capsys.readouterr()
    assert code == 2 and "user name or password" in captured.err, captured.err
    assert URL_SECRET not in captured.err + captured.out
    assert _Handler.paths == [] and "grade_coherence" not in runs.open_run(out)
    with pytest.raises(MechintroError, match="is not an http") as info:
        judge.HTTPJudge(base_url=f"ftp://h/?key={URL_SECRET}", model="m")
    assert URL_SECRET not in str(info.value)


# --- Anthropic's Messages API (issue 32) ------------------------------------------------------


class _Messages(BaseHTTPRequestHandler):
    """A local server speaking Anthropic's documented Messages schema: POST /v1/messages with
    x-api-key and anthropic-version headers; errors as {"type": "error", "error": {...}}."""

    replies: ClassVar[list[str]] = []
    seen: ClassVar[list[tuple[str, dict, dict]]] = []  # (path, headers, body)

    def _send(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, kind: str, message: str) -> None:
        self._send(code, {"type": "error", "error": {"type": kind, "message": message}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Messages.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if self.path != "/v1/messages":  # echoes the key it got, as a careless proxy might
            return self._error(
                404, "not_found_error", f"Not found ({self.headers.get('x-api-key')})"
            )
        if self.headers.get("x-api-key") != KEY:
            return self._error(401, "authentication_error", "invalid x-api-key")
        if not self.headers.get("anthropic-version") or "Authorization" in self.headers:
            return self._error(400, "invalid_request_error", "anthropic-version required")
        messages = body.get("messages")
        if (
            not isinstance(body.get("model"), str)
            or not isinstance(body.get("max_tokens"), int)
            or not isinstance(messages, list)
            or not all(set(m) == {"role", "content"} for m in messages)
            or not set(body) <= {"model", "max_tokens", "messages", "system", "temperature"}
        ):
            return self._error(400, "invalid_request_error", "malformed request")
        text = _Messages.replies.pop(0) if _Messages.replies else "The answer is YES"
        self._send(
            200,
            {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 3},
            },
        )

    def log_message(self, *args):
        pass


@pytest.fixture()
def messages_api():
    httpd = _serve(_Messages)
    _Messages.replies, _Messages.seen = [], []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_anthropic_judge_speaks_the_messages_schema(messages_api, monkeypatch):
    monkeypatch.setenv("MECHINTRO_TEST_KEY", KEY)
    j = judge.AnthropicJudge(
        base_url=messages_api, model="claude-sonnet-4-0", api_key_env="MECHINTRO_TEST_KEY"
    )
    _Messages.replies = ["It says it noticed dust. YES", "Nothing decisive."]
    v = judge.grade(j, "affirmative", question="Do you detect?", response="Yes, dust.")
    assert v.answer == "YES" and v.judge == f"anthropic:claude-sonnet-4-0@{messages_api}"
    assert judge.grade(j, "coherence", question="Q", response="R").answer == "ungraded"
    path, headers, body = _Messages.seen[0]
    assert path == "/v1/messages" and headers["anthropic-version"] == judge.ANTHROPIC_VERSION
    assert body["model"] == "claude-sonnet-4-0" and body["max_tokens"] == 1024
    assert body["temperature"] == 0 and "system" not in body
    assert body["messages"] == [
        {
            "role": "user",
            "content": judge.grader_prompt(
                "affirmative", question="Do you detect?", response="Yes, dust."
            ),
        }
    ]
    assert KEY not in json.dumps([b for _, _, b in _Messages.seen]) and KEY not in repr(j)
    # a system prompt when one is given; a base URL ending in /v1 reaches the same path
    j = judge.AnthropicJudge(
        base_url=messages_api + "/v1/",
        model="m",
        api_key_env="MECHINTRO_TEST_KEY",
        system="Be brief.",
    )
    assert judge.parse_verdict(j.complete("hi")) == "YES"
    assert (
        _Messages.seen[-1][0] == "/v1/messages" and _Messages.seen[-1][2]["system"] == "Be brief."
    )


def test_anthropic_judge_errors_are_one_line_and_never_carry_the_key(
    messages_api, redirecting, monkeypatch
):
    def fails(base, key, match):
        monkeypatch.setenv("MECHINTRO_TEST_KEY", key)
        j = judge.AnthropicJudge(base_url=base, model="m", api_key_env="MECHINTRO_TEST_KEY")
        with pytest.raises(MechintroError, match=match) as info:
            j.complete("x")
        text = str(info.value)
        assert KEY not in text and "\n" not in text, text
        full = "".join(traceback.format_exception(info.value))
        assert KEY not in full  # nor in the traceback --debug shows

    fails(messages_api, "sk-wrong-" + KEY, "HTTP 401")
    fails("http://127.0.0.1:9", KEY, "unreachable")
    fails(redirecting[0], KEY, "a redirect")
    assert redirecting[1] == []
    monkeypatch.delenv("MECHINTRO_TEST_KEY")
    with pytest.raises(MechintroError, match="set the environment variable MECHINTRO_TEST_KEY"):
        judge.AnthropicJudge(model="m", api_key_env="MECHINTRO_TEST_KEY").complete("x")


def test_cli_grades_with_the_messages_api_and_writes_the_key_nowhere(
    tiny, messages_api, tmp_path, monkeypatch, caplog, capsys
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    out = _generation_run(tiny, tmp_path / "g.zarr")
    argv = ["grade", str(out), "--judge-api", "anthropic", "--judge-url", messages_api]
    assert main([*argv, "--judge-model", "claude-sonnet-4-0", "--criteria", "coherence"]) == 0
    ds = runs.open_run(out)
    assert ds["grade_coherence"].values.tolist() == ["YES", "YES"]
    assert ds.attrs["judge_coherence"] == f"anthropic:claude-sonnet-4-0@{messages_api}"
    assert runs.verify(out).ok
    for f in out.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
    captured = capsys.readouterr()
    assert "anthropic:claude-sonnet-4-0" in captured.out
    assert KEY not in captured.out + captured.err + caplog.text
    # a wrong key: exit 2, one line, nothing stored, under --debug no key in the traceback
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-wrong-" + KEY)
    fresh = _generation_run(tiny, tmp_path / "h.zarr")
    argv = ["grade", str(fresh), "--judge-api", "anthropic", "--judge-url", messages_api]
    assert main(["-q", *argv, "--judge-model", "m"]) == 2
    err = capsys.readouterr().err.strip()
    assert "HTTP 401" in err and "\n" not in err and KEY not in err
    assert "grade_coherence" not in runs.open_run(fresh)
    with pytest.raises(MechintroError) as info:
        main(["--debug", *argv, "--judge-model", "m"])
    assert KEY not in "".join(traceback.format_exception(info.value))


def test_a_messages_server_that_echoes_the_key_has_it_scrubbed(messages_api, monkeypatch):
    """A proxy in front of the Messages API that echoes the x-api-key header back (in the reply's
    text and in an error's message) must not get it into a verdict, an error or a traceback."""
    monkeypatch.setenv("MECHINTRO_TEST_KEY", KEY)
    j = judge.AnthropicJudge(base_url=messages_api, model="m", api_key_env="MECHINTRO_TEST_KEY")
    _Messages.replies = [f"you sent {KEY}; YES"]
    text = j.complete("x")
    assert KEY not in text and "***" in text and judge.parse_verdict(text) == "YES"
    with pytest.raises(MechintroError) as info:
        judge.AnthropicJudge(
            base_url=messages_api + "/echo-key", model="m", api_key_env="MECHINTRO_TEST_KEY"
        ).complete("x")
    full = "".join(traceback.format_exception(info.value))
    assert "HTTP 404" in str(info.value) and KEY not in full
