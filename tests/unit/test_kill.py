"""Runs killed with SIGKILL at random moments and started again finish identical to
uninterrupted runs — in logit and generation mode, with and without residual recording; writers
started together on one store leave it whole.

The number of kill points per configuration is ``MECHINTRO_KILL_POINTS`` (default 2).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr

from mechintro import runs

ROOT = Path(__file__).resolve().parents[2]
KILL_POINTS = int(os.environ.get("MECHINTRO_KILL_POINTS", "2"))


def _child(out: Path, mode: str, record: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.kill_child", str(out), mode, record],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(out: Path, mode: str, record: str) -> None:
    """Start the same run again on the killed run's store. In this process: the store on disk is
    all a resume reads, and this process never wrote to it (the killed child did)."""
    from tests import kill_child

    kill_child.main(str(out), mode, record)


_UNINTERRUPTED: dict[tuple[str, str], tuple[xr.Dataset, float]] = {}


def _uninterrupted(tmp_path_factory, mode: str, record: str) -> tuple[xr.Dataset, float]:
    """The uninterrupted run, made once in this process (the same deterministic run a child
    makes, without a start-up), and how long its run took after the model was built."""
    from tests import kill_child

    if (mode, record) not in _UNINTERRUPTED:
        out = tmp_path_factory.mktemp(f"reference-{mode}-{record}") / "reference.zarr"
        started: list[float] = []
        kill_child.main(str(out), mode, record, ready=lambda: started.append(time.perf_counter()))
        duration = time.perf_counter() - started[0]
        _UNINTERRUPTED[mode, record] = (runs.open_run(out).load().drop_attrs(), duration)
    return _UNINTERRUPTED[mode, record]


@pytest.mark.parametrize(
    ("mode", "record"), [("logits", "0"), ("logits", "1"), ("generate", "0"), ("generate", "1")]
)
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, tmp_path_factory, mode, record):
    expected, duration = _uninterrupted(tmp_path_factory, mode, record)
    rng = random.Random(f"{mode}{record}")
    for k in range(KILL_POINTS):
        out = tmp_path / f"killed{k}.zarr"
        proc = _child(out, mode, record)
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-2000:]
        time.sleep(rng.uniform(0.05, 0.98) * duration)  # a moment inside the run
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():  # killed after the store was created: only committed trials are visible
            partial = runs.open_run(out)
            assert partial.sizes["trial"] <= expected.sizes["trial"]
            xr.testing.assert_identical(
                partial.drop_attrs(), expected.isel(trial=partial.trial.values)
            )
        _finish(out, mode, record)
        xr.testing.assert_identical(runs.open_run(out).load().drop_attrs(), expected)
        assert runs.verify(out).ok


# --- Two or three writers on one --out (issue 13): the lock keeps the store whole -----------------

# CI: one start of three writers (the lock's contention in its worst case). The full check, two
# and three writers 20 times each: MECHINTRO_WRITER_REPS=20.
WRITER_REPS = int(os.environ.get("MECHINTRO_WRITER_REPS", "1"))
WRITERS = [3] if WRITER_REPS == 1 else [2, 3]
LOCKED = "is being written by another mechintro process"


@pytest.fixture(scope="module")
def single_writer(tmp_path_factory):
    return _uninterrupted(tmp_path_factory, "logits", "1")[0]


@pytest.mark.parametrize("writers", WRITERS)
def test_concurrent_writers_leave_one_whole_store(tmp_path, single_writer, writers):
    expected = single_writer.drop_attrs()
    for rep in range(WRITER_REPS):
        out = tmp_path / f"shared{rep}.zarr"
        procs = [_child(out, "logits", "1") for _ in range(writers)]  # started together
        results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
        for code, err in results:
            # each writer either did the work (or found it done) or was refused with one line
            assert code == 0 or LOCKED in err, err[-2000:]
        assert any(code == 0 for code, _ in results)
        assert runs.verify(out).ok
        xr.testing.assert_identical(runs.open_run(out).load().drop_attrs(), expected)
        assert not list(tmp_path.glob(f"shared{rep}.zarr.partial-*"))


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    from mechintro._fs import store_lock
    from mechintro.errors import MechintroError

    out = tmp_path / "r.zarr"
    probe = [
        sys.executable,
        "-c",
        "import sys; from mechintro._fs import store_lock\n"
        "try:\n    store_lock(sys.argv[1]).__enter__()\n"
        "except Exception as e:\n    print(e); sys.exit(3)",
        str(out),
    ]
    with store_lock(out):
        held = subprocess.run(probe, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert (
            held.returncode == 3 and LOCKED in held.stdout and f"pid {os.getpid()}" in held.stdout
        )
        with pytest.raises(MechintroError, match=LOCKED):  # also within one process
            with store_lock(out):
                pass
    free = subprocess.run(probe, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert free.returncode == 0, free.stdout


def test_lock_of_a_killed_writer_is_not_stale(tmp_path):
    from mechintro._fs import store_lock

    out = tmp_path / "r.zarr"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from mechintro._fs import store_lock\n"
            "store_lock(sys.argv[1]).__enter__(); print('held', flush=True); time.sleep(600)",
            str(out),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with store_lock(out):  # the kernel released it with the process
        pass


def test_staging_cleanup_spares_live_writers_and_user_folders(tmp_path):
    from mechintro import _fs

    out = tmp_path / "x.zarr"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    user = tmp_path / "x.zarr.partial-notes"  # before: deleted by the cleanup
    live = (
        tmp_path / f"x.zarr.partial-{_fs._host()}-{os.getppid()}"
    )  # another process's, still running
    other_host = tmp_path / f"x.zarr.partial-elsewhere-{dead.pid}"  # a process on another machine
    stale = tmp_path / f"x.zarr.partial-{_fs._host()}-{dead.pid}"  # ours, its writer gone
    for folder in (user, live, other_host, stale):
        folder.mkdir()
    for folder in (live, stale):  # a writer marks its staging folder before making it
        _fs._marker(folder).write_text("staging")
    with _fs.staged_dir(out) as staging:
        staging.mkdir()
    assert (
        out.is_dir()
        and user.is_dir()
        and live.is_dir()
        and other_host.is_dir()
        and not stale.exists()
    )


def test_sigterm_prints_the_resume_line(monkeypatch, capsys):
    from mechintro import cli

    def terminated(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler interrupts this
        return 0

    monkeypatch.setattr(cli, "_cmd_info", terminated)
    assert cli.main(["info", "whatever.zarr"]) == 143
    assert (
        capsys.readouterr().err.strip()
        == "mechintro: interrupted; committed trials are kept — run the same command to resume"
    )
    assert signal.getsignal(signal.SIGTERM) is not cli._on_sigterm  # restored afterwards


def test_a_store_and_a_link_to_it_share_one_lock(tmp_path):
    # issue 30 row 6, before: writers on real.zarr and link.zarr both held "the" lock and wrote
    from mechintro._fs import staged_dir, store_lock
    from mechintro.errors import MechintroError

    real = tmp_path / "real.zarr"
    real.mkdir()
    link = tmp_path / "link.zarr"
    link.symlink_to(real)
    (tmp_path / "sub").mkdir()
    dotted = tmp_path / "sub" / ".." / "real.zarr"
    with store_lock(real):
        for other in (link, dotted):
            with pytest.raises(MechintroError, match=LOCKED):
                with store_lock(other):
                    pass
    with store_lock(link):
        with pytest.raises(MechintroError, match=LOCKED):
            with store_lock(real):
                pass
    fresh_link = tmp_path / "new-link.zarr"
    fresh_link.symlink_to(tmp_path / "new-real.zarr")  # a link to a store not made yet
    with staged_dir(fresh_link) as staging:
        assert staging.parent == tmp_path and staging.name.startswith("new-real.zarr.partial-")
        staging.mkdir()
    assert (
        tmp_path / "new-real.zarr"
    ).is_dir() and fresh_link.resolve() == tmp_path / "new-real.zarr"
