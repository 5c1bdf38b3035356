"""`mechintro report RUN --out report.html`: one self-contained page, exercised in a real
headless Chromium (Debian's `chromium` + `chromium-driver`, driven by selenium). The page must
load with no console errors, the filters must change the visible rows, and a clicked row must
open its transcript. A screenshot is kept under tests/artifacts/ for a person to look at."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "analyses" / "data" / "smollm2-135m"
ARTIFACTS = ROOT / "tests" / "artifacts"


def _report(run: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mechintro.cli", "-q", "report", str(run), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "injected-thoughts.html"
    done = _report(SHIPPED / "injected-thoughts.zarr", out)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_the_report_is_self_contained(page):
    text = page.read_text()
    # nothing is fetched: no external script, style sheet, image or font
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "@import" not in text and "url(http" not in text
    assert text.count("data:image/png;base64,") == 2  # injected-thoughts draws two figures
    for part in ("weights_sha256", "git_commit", "mechintro_version", "95%"):
        assert part in text


def test_report_refuses_bad_input_in_one_line(tmp_path):
    done = _report(SHIPPED / "injected-thoughts.zarr", tmp_path / "report.txt")
    assert (
        done.returncode == 2
        and "Traceback" not in done.stderr
        and len(done.stderr.strip().splitlines()) == 1
    )
    assert "should end in .html" in done.stderr and not list(tmp_path.iterdir())
    done = _report(tmp_path / "missing.zarr", tmp_path / "r.html")
    assert (
        done.returncode == 2
        and len(done.stderr.strip().splitlines()) == 1
        and not list(tmp_path.iterdir())
    )


def _driver():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail(
                "CI is set but chromium/chromedriver are "
                "missing: .ci/run installs them with apt-get"
            )
        pytest.skip(
            "headless browser test: install Debian's chromium and "
            "chromium-driver (apt-get install -y chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1600",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def test_the_report_works_in_headless_chromium(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser = _driver()
    try:
        browser.get(page.as_uri())
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors

        def visible() -> list:
            return [
                r
                for r in browser.find_elements(By.CSS_SELECTOR, "#trials tbody tr[data-trial]")
                if r.is_displayed()
            ]

        # the summary: headed by what it is, each note wrapped inside the page (none cut off)
        assert "Summary (95% intervals)" not in browser.page_source
        notes = browser.find_elements(By.CSS_SELECTOR, "p.note, ul.intervals li")
        assert len(notes) >= 4
        assert all(
            browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", n)
            for n in notes
        )
        everything = visible()
        assert len(everything) == 120
        assert browser.find_element(By.ID, "count").text == "120 of 120 trials shown"
        Select(browser.find_element(By.ID, "f-condition")).select_by_value("control")
        controls = visible()
        assert 0 < len(controls) < len(everything)
        assert all(r.get_attribute("data-condition") == "control" for r in controls)
        Select(browser.find_element(By.ID, "f-condition")).select_by_value("injected")
        Select(browser.find_element(By.ID, "f-layer")).select_by_value("15")
        rows = visible()
        assert rows and all(r.get_attribute("data-layer") == "15" for r in rows)
        box = browser.find_element(By.ID, "q")
        concept = rows[0].get_attribute("data-concept")
        box.send_keys(concept.lower())
        rows = visible()
        assert rows and all(r.get_attribute("data-concept") == concept for r in rows)
        rows[0].click()
        shown = browser.find_element(By.CSS_SELECTOR, "#inline-transcript .mi-t")
        assert shown.get_attribute("data-trial") == rows[0].get_attribute("data-trial")
        assert shown.find_element(By.TAG_NAME, "mark").text.strip()  # the injected window
        assert shown.find_element(By.CSS_SELECTOR, "pre.response").text.strip()
        assert "affirmative_identification" in shown.text
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        ARTIFACTS.mkdir(exist_ok=True)
        browser.execute_script("document.getElementById('inline-transcript').scrollIntoView()")
        assert browser.save_screenshot(str(ARTIFACTS / "report-injected-thoughts.png"))
    finally:
        browser.quit()


# ---------------------------------------------------------------------------------------------
# Hostile strings (issue 30, row 7): concept names, responses, verdicts and config values that
# are HTML, script, or named like the template's placeholders must show as text, never run.

# the issue's own case: a concept named like a placeholder received the raw JSON payload
ISSUE_CONCEPTS = ("<img src=x onerror=alert(1)>", "__DATA__")
HOSTILE = (
    "<img src=x onerror=alert(1)>",
    "__DATA__",
    "__SUMMARY__",
    "__PROV__ __SELECTS__ __TITLE__ __HEADERS__",
    "</script><script>window.__pwned='script'</script>",
    '"><svg onload="window.__pwned=`svg`">',
    "'><b onmouseover='window.__pwned=1'>b</b>",
    "<!--<script>window.__pwned='comment'</script>",
    "x\u2028y\u2029<\u2028/script>",
    "&lt;img src=x onerror=alert(2)&gt; &amp;",
)
# every tag the page itself may hold; anything else is injected markup
ALLOWED_TAGS = set(
    "html head meta title style body h1 h2 h3 h4 table thead tbody tr th td code details "
    "summary pre p ul li b figure img figcaption div label input select option span script "
    "mark a".split()
)
WATCH = (  # before the page's own script runs: any alert() or handler marks the page
    "window.alert = (x) => { window.__pwned = 'alert ' + x; };"
)


class _Tags(__import__("html.parser").parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def _parsed_problems(text: str) -> list[str]:
    """What an HTML parser finds live in the page: handlers, foreign tags, images that are not
    the embedded figures, scripts besides the page's two."""
    p = _Tags()
    p.feed(text)
    p.close()
    bad = []
    for tag, attrs in p.tags:
        bad += [f"{tag} {a}" for a in attrs if a.lower().startswith("on")]
        if tag not in ALLOWED_TAGS:
            bad.append(f"tag {tag}")
        if tag == "img" and not str(attrs.get("src", "")).startswith("data:image/png;base64,"):
            bad.append(f"img {attrs.get('src')}")
    scripts = [(t, a) for t, a in p.tags if t == "script"]
    if [a for _, a in scripts] != [{"id": "data", "type": "application/json"}, {}]:
        bad.append(f"scripts {scripts}")
    return bad


_BROWSER_PROBLEMS = """
const bad = [];
for (const el of document.querySelectorAll("*")) {
  for (const a of el.attributes) if (/^on/i.test(a.name)) bad.push(el.tagName + " " + a.name);
  if (!arguments[0].includes(el.tagName.toLowerCase())) bad.push("tag " + el.tagName);
  if (el.tagName === "IMG" && !el.getAttribute("src").startsWith("data:image/png;base64,"))
    bad.push("img " + el.getAttribute("src"));
}
if (document.scripts.length !== 2) bad.push("scripts: " + document.scripts.length);
if (window.__pwned !== undefined) bad.push("script ran: " + window.__pwned);
return bad;
"""


@pytest.fixture(scope="module")
def hostile_pages(tiny, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Two small real runs on the tiny model and their reports: the issue's two concepts in
    logit mode (written by `write_report`, as the CLI does), and every hostile string as a
    concept, a system message, a response, a judge's verdict and reply, the model's name and a
    judge's identity in generation mode (``build_report`` with the run's tokenizer, so the
    prompt's tokens are text)."""
    import numpy as np

    import mechintro as mi
    from mechintro.experiments import detection_logits as D
    from mechintro.experiments import injected_thoughts as IT
    from mechintro.report import build_report, write_report
    from mechintro.vectors import concept_vectors

    where = tmp_path_factory.mktemp("hostile")
    vectors = concept_vectors(
        tiny, list(HOSTILE), baseline=["Sand", "Clay"], cache=False, progress=False
    )
    logit = D.run(
        D.DetectionLogitsConfig(
            model="tiny", concepts=ISSUE_CONCEPTS, layers=("1",), strengths=(4.0,), batch_size=4
        ),
        where / "issue.zarr",
        model=tiny,
        vectors=vectors,
    )
    issue_page = write_report(logit, where / "issue.html", progress=False)
    gen = IT.run(
        IT.InjectedThoughtsConfig(
            model="tiny",
            concepts=HOSTILE,
            layers=("1",),
            strengths=(4.0,),
            trials=len(HOSTILE),
            controls=1,
            max_new_tokens=6,
            system_message=HOSTILE[4] + HOSTILE[1],
            batch_size=4,
        ),
        where / "hostile.zarr",
        model=tiny,
        vectors=vectors,
    )
    ds = mi.open_run(gen).load()
    n = ds.sizes["trial"]
    assert n > len(HOSTILE)  # every hostile string is one trial's response
    said = np.array([HOSTILE[k % len(HOSTILE)] for k in range(n)], dtype=object)
    ds["response"] = ("trial", said)
    ds["grade_coherence"] = ("trial", np.array([HOSTILE[5]] * n, dtype=object))
    ds["grade_coherence_reply"] = ("trial", np.array([HOSTILE[6]] * n, dtype=object))
    ds.attrs |= {"model": HOSTILE[0] + HOSTILE[2], "judge_coherence": HOSTILE[3]}
    page = where / "hostile.html"
    page.write_text(build_report(ds, tokenizer=tiny.tokenizer), encoding="utf-8")
    return {
        "issue": (issue_page, {"concepts": set(ISSUE_CONCEPTS)}),
        "hostile": (
            page,
            {"concepts": {str(c) or "(none)" for c in ds.concept.values}, "responses": set(said)},
        ),
    }


@pytest.mark.parametrize("which", ["issue", "hostile"])
def test_hostile_strings_are_inert_in_an_html_parser(hostile_pages, which):
    import json

    page, expect = hostile_pages[which]
    text = page.read_text(encoding="utf-8")
    assert _parsed_problems(text) == []
    p = _Tags()
    p.feed(text)
    data = json.loads(p.scripts[0])  # the payload parses whole, strings exactly as stored
    concepts = {
        t["labels"].get("concept", data["labels"]["common"].get("concept")) for t in data["trials"]
    }
    assert concepts >= expect["concepts"] - {"(none)"}
    if "responses" in expect:
        assert {t["response"] for t in data["trials"]} == expect["responses"]
    options = [a.get("value") for t, a in p.tags if t == "option"]
    assert set(options) >= expect["concepts"] - {"(none)"}  # each a whole option value


@pytest.mark.parametrize("which", ["issue", "hostile"])
def test_hostile_strings_are_inert_in_headless_chromium(hostile_pages, which):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page, expect = hostile_pages[which]
    browser = _driver()
    try:
        browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH})
        browser.get(page.as_uri())
        allowed = sorted(ALLOWED_TAGS)
        assert browser.execute_script(_BROWSER_PROBLEMS, allowed) == []
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        # every concept is one whole option, shown as itself
        shown = {
            o.get_attribute("value"): o.get_attribute("textContent")
            for o in Select(browser.find_element(By.ID, "f-concept")).options
        }
        assert all(shown.get(c) == c for c in expect["concepts"] - {"(none)"}), shown
        cells = browser.find_elements(By.CSS_SELECTOR, "#trials td[data-col=concept]")
        assert {c.get_attribute("textContent") for c in cells} >= expect["concepts"]
        # open every trial's transcript, sort by every column, filter by every concept
        rows = browser.find_elements(By.CSS_SELECTOR, "#trials tbody tr[data-trial]")
        for r in rows:
            browser.execute_script("arguments[0].click()", r)
            assert browser.execute_script(_BROWSER_PROBLEMS, allowed) == []
            text = browser.find_element(By.ID, "inline-transcript").get_attribute("textContent")
            if "responses" in expect:
                assert any(s in text for s in expect["responses"])
        for th in browser.find_elements(By.CSS_SELECTOR, "#trials thead th"):
            th.click()
        for concept in expect["concepts"]:
            Select(browser.find_element(By.ID, "f-concept")).select_by_value(concept)
            assert browser.find_element(By.ID, "count").text.split()[0] != "0"
        browser.find_element(By.ID, "q").send_keys("<img")
        assert browser.execute_script(_BROWSER_PROBLEMS, allowed) == []
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        browser.quit()


# ---------------------------------------------------------------------------------------------
# The trial list, control trials, injected generated tokens (issue 36 item 8) and the index of a
# folder of runs (issue 36, run browser).


HOSTILE_RUN = "<img src=x onerror=alert(1)>'\" __ROWS__ %2e.zarr"


@pytest.fixture(scope="module")
def logit_runs(tiny, tmp_path_factory) -> Path:
    """A folder of small logit-mode runs on the tiny model: one complete (in a subfolder), one
    interrupted after two batches, one damaged, and folders that are not runs."""
    import numpy as np  # noqa: F401

    from mechintro import runs
    from mechintro.experiments import detection_logits as D
    from mechintro.vectors import concept_vectors

    folder = tmp_path_factory.mktemp("runs")
    vectors = concept_vectors(
        tiny, ["Dust", "Oceans", "Poetry"], baseline=["Sand", "Clay"], cache=False, progress=False
    )
    config = D.DetectionLogitsConfig(
        model="tiny",
        concepts=("Dust", "Oceans", "Poetry"),
        layers=("0", "2"),
        strengths=(2.0, 8.0),
        batch_size=3,
    )
    (folder / "a").mkdir()
    done = D.run(config, folder / "a" / "complete.zarr", model=tiny, vectors=vectors)
    real, calls = runs.write_batch, {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real(*args, **kwargs)

    runs.write_batch = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            D.run(config, folder / "cut.zarr", model=tiny, vectors=vectors)
    finally:
        runs.write_batch = real
    shutil.copytree(done, folder / "broken.zarr")
    shutil.copytree(done, folder / HOSTILE_RUN)  # a folder name is shown and linked as text
    (folder / "broken.zarr" / "input_ids" / "zarr.json").unlink()
    (folder / "notes").mkdir()
    (folder / "notes" / "todo.txt").write_text("not a run")
    shutil.copytree(done, folder / "x.zarr.partial-host-1")  # a run being written: skipped
    return folder


@pytest.fixture(scope="module")
def index(logit_runs, tmp_path_factory) -> Path:
    from mechintro.cli import main

    out = tmp_path_factory.mktemp("index") / "index.html"
    assert main(["-q", "report", str(logit_runs), "--out", str(out)]) == 0
    return out


def _index_rows(text: str) -> dict[str, list[str]]:
    cells = re.findall(r"<tr>(.*?)</tr>", text.split("<tbody>")[1], re.S)
    rows = {}
    for c in cells:
        tds = re.findall(r"<td[^>]*>(.*?)</td>", c, re.S)
        name = __import__("html").unescape(re.sub(r"<[^>]+>", "", tds[0]))
        rows[name] = tds
    return rows


def test_the_index_lists_each_run_with_its_status_and_links_its_report(index, logit_runs):
    import html
    import urllib.parse

    text = index.read_text(encoding="utf-8")
    rows = _index_rows(text)
    assert set(rows) == {"a/complete.zarr", "cut.zarr", "broken.zarr", HOSTILE_RUN}
    status = {name: tds[5] for name, tds in rows.items()}
    assert status == {
        "a/complete.zarr": "complete",
        "cut.zarr": "resumable",
        "broken.zarr": "damaged",
        HOSTILE_RUN: "complete",
    }
    tags = _Tags()
    tags.feed(text)
    assert not tags.scripts and {t for t, _ in tags.tags} <= ALLOWED_TAGS
    assert not [a for _, attrs in tags.tags for a in attrs if a.lower().startswith("on")]
    done = rows["a/complete.zarr"]
    assert done[1] == "detection-logits" and done[2] == "tiny-llama" and done[3] == "16"
    assert done[5 + 1].startswith("largest P(yes)-share shift") and done[7].startswith("20")
    assert rows["cut.zarr"][3] == "6"  # two batches of three committed
    assert "input_ids" in html.unescape(rows["broken.zarr"][6])  # the reason it is damaged
    links = re.findall(r'<a href="([^"]+)">', text)
    assert len(links) == 3  # the damaged run has no report
    for link in links:
        report = index.parent / urllib.parse.unquote(html.unescape(link))
        assert report.is_file() and '<table id="trials">' in report.read_text()
    assert not list(index.parent.glob("**/*.partial"))


def test_report_of_a_folder_without_runs_is_refused_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    done = _report(tmp_path / "empty", tmp_path / "index.html")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "holds no mechintro runs" in done.stderr and not (tmp_path / "index.html").exists()


def _cells(browser, column: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [
        td.get_attribute("textContent")
        for td in browser.find_elements(By.CSS_SELECTOR, f"#trials td[data-col={column}]")
        if td.is_displayed()
    ]


def test_trial_list_sorts_by_each_column(index):
    from selenium.webdriver.common.by import By

    link = re.findall(r'<a href="([^"]+)">a/complete.zarr', index.read_text())[0]
    browser = _driver()
    try:
        browser.get(index.as_uri())
        browser.find_element(By.LINK_TEXT, "a/complete.zarr").click()
        assert browser.current_url.endswith(link)
        header = {
            th.get_attribute("data-key"): th
            for th in browser.find_elements(By.CSS_SELECTOR, "#trials thead th")
        }
        assert set(header) == {
            "i", "concept", "condition", "layer", "strength", "readout", "mass", "shift"
        }  # fmt: skip
        assert [int(x) for x in _cells(browser, "i")] == list(range(16))

        def numbers(column: str) -> list[float | None]:
            # a control shows its cell's value as "— (cell 8)", and sorts by it
            return [
                float(x.split("cell ")[-1].rstrip(")")) if x else None
                for x in _cells(browser, column)
            ]

        for key in ("shift", "mass", "readout", "strength", "i"):
            header[key].click()
            up = numbers(key)
            assert header[key].get_attribute("aria-sort") == "ascending"
            filled = [x for x in up if x is not None]
            assert filled == sorted(filled) and up[: len(filled)] == filled  # blanks last
            header[key].click()
            down = numbers(key)
            assert header[key].get_attribute("aria-sort") == "descending"
            filled = [x for x in down if x is not None]
            assert filled == sorted(filled, reverse=True) and down[: len(filled)] == filled
        header["concept"].click()
        concepts = _cells(browser, "concept")
        assert concepts == sorted(concepts, key=str.casefold) and len(set(concepts)) == 4
        # controls sort with their cell by layer, and show that nothing was injected there
        header["layer"].click()
        layers = _cells(browser, "layer")
        assert [x.split("cell ")[-1].rstrip(")") for x in layers] == ["0"] * 8 + ["2"] * 8
        assert {x for x in layers if x.startswith("—")} == {"— (cell 0)", "— (cell 2)"}
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        browser.quit()


def test_mass_and_shift_are_the_runs_own(logit_runs):
    import numpy as np

    import mechintro as mi
    from mechintro.readouts import yes_no
    from mechintro.report import _trial_data

    ds = mi.open_run(logit_runs / "a" / "complete.zarr")
    rows = _trial_data(ds, "detection-logits", None)["trials"]
    yn = yes_no(ds)
    control = ds.condition.values == "control"
    base = float(yn.p_yes_norm.values[control].mean())  # one prompt: the controls are equal
    assert np.ptp(yn.p_yes_norm.values[control]) < 1e-12
    for k, row in enumerate(rows):
        # to the 6 significant digits the page stores
        assert row["mass"] == pytest.approx(float(yn.mass.values[k]), rel=1e-5)
        assert row["shift"] == pytest.approx(float(yn.p_yes_norm.values[k]) - base, abs=1e-6)


def test_control_and_injected_transcripts_in_headless_chromium(page):
    """A control trial's header names no injection layer or strength (it names its cell); an
    injected trial of a run injected on generated tokens shows its generated tokens marked."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    import mechintro as mi
    from mechintro.transcripts import _tokenizer_for, injected_response_chars

    ds = mi.open_run(SHIPPED / "injected-thoughts.zarr")
    browser = _driver()
    try:
        browser.get(page.as_uri())
        Select(browser.find_element(By.ID, "f-condition")).select_by_value("control")
        row = next(
            r
            for r in browser.find_elements(By.CSS_SELECTOR, "#trials tbody tr[data-trial]")
            if r.is_displayed()
        )
        i = int(row.get_attribute("data-trial"))
        layer, strength = int(ds.inject_layer.values[i]), float(ds.strength.values[i])
        cells = {
            td.get_attribute("data-col"): td.text for td in row.find_elements(By.TAG_NAME, "td")
        }
        assert cells["layer"] == f"— (cell {layer})"
        assert cells["strength"] == f"— (cell {strength:g})"
        row.click()
        shown = browser.find_element(By.CSS_SELECTOR, "#inline-transcript .mi-t")
        meta = shown.find_element(By.CLASS_NAME, "meta").text
        assert "layer — · strength —" in meta
        assert (
            f"injected nothing (control trial of the layer {layer}, strength {strength:g}" in meta
        )
        assert "injected on" not in meta and f"layer {layer} ·" not in meta
        assert not shown.find_elements(By.TAG_NAME, "mark")
        assert "prompt (nothing injected)" in shown.text

        Select(browser.find_element(By.ID, "f-condition")).select_by_value("injected")
        row = next(
            r
            for r in browser.find_elements(By.CSS_SELECTOR, "#trials tbody tr[data-trial]")
            if r.is_displayed()
        )
        i = int(row.get_attribute("data-trial"))
        row.click()
        shown = browser.find_element(By.CSS_SELECTOR, "#inline-transcript .mi-t")
        assert "injected on prompt and generated tokens" in shown.text
        response = shown.find_element(By.CSS_SELECTOR, "pre.response")
        mark = response.find_element(By.TAG_NAME, "mark").get_attribute("textContent")
        k = injected_response_chars(ds, i, _tokenizer_for(ds.attrs["model"]))
        assert k and mark == str(ds.response.values[i])[:k]
        assert response.get_attribute("textContent") == str(ds.response.values[i])
    finally:
        browser.quit()


def test_show_names_no_layer_or_strength_for_a_control_trial():
    import numpy as np

    import mechintro as mi
    from mechintro.transcripts import trial

    ds = mi.open_run(SHIPPED / "injected-thoughts.zarr")
    c = int(np.flatnonzero(ds.condition.values == "control")[0])
    text = trial(ds, c).text()
    layer, strength = int(ds.inject_layer.values[c]), float(ds.strength.values[c])
    assert "layer=—" in text and "strength=—" in text and "injected on" not in text
    assert "--- prompt (nothing injected) ---" in text and "⟦" not in text
    assert f"injected=nothing (control trial of the layer {layer}, strength {strength:g} cell)" in (
        text
    )
    i = int(np.flatnonzero(ds.condition.values == "injected")[0])
    text = trial(ds, i).text()
    assert f"layer={int(ds.inject_layer.values[i])}" in text and "injected=" not in text
    assert "--- response (⟦injected⟧) ---" in text


def test_summary_text_keeps_every_line_and_lists_the_intervals():
    from mechintro.report import _interval_note, _summary_html
    from mechintro.tables import table

    text = "\n".join(
        [
            table([{"layer": 1, "TPR 95% CI": "[0.1, 0.2]"}, {"layer": 2, "TPR 95% CI": "[0, 1]"}]),
            "readout: " + "a long note " * 30,
            "intervals: TPR: range of the means — not a 95% CI (2 clusters); FPR: Wilson",
        ]
    )
    page = _summary_html(text, _interval_note(None, text))
    assert page.count("<pre class='summary'>") == 1 and "TPR 95% CI" in page.split("</pre>")[0]
    assert "<p class='note'>readout: a long note" in page  # wrapped text, not in the <pre>
    assert "<li>TPR: range of the means — not a 95% CI (2 clusters)</li><li>FPR: Wilson</li>" in (
        page
    )
    assert "<b>not</b> 95% confidence intervals" in page and page.count("intervals:") == 0
