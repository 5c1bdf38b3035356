"""The ``mechintro`` command line. It owns the terminal: progress bars, tables, one-line errors.

    mechintro vectors --concepts Dust,Oceans --out vectors.zarr
    mechintro run detection-logits --layers 0.5,0.67 --strengths 1,2,4,8 --out runs/demo.zarr
    mechintro info runs/demo.zarr

Bad input exits with status 2 and one line on stderr naming the problem and the fix; ``--debug``
shows the traceback instead.

Each command is one module of this package, registered in :data:`COMMANDS`: its ``HELP`` (the
line ``mechintro --help`` lists), ``arguments(parser)`` (added only when the command is chosen)
and ``command(args) -> int`` (the exit status). The value types, the parser class and
``--set KEY=VALUE`` are in :mod:`mechintro.cli._args`; what several commands do (check ``--out``,
load the model, draw progress) in :mod:`mechintro.cli._common`. A new command is one module plus
one line here.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import NoReturn

from mechintro.cli._args import Parser
from mechintro.errors import MechintroError

COMMANDS: tuple[str, ...] = (
    "vectors",
    "run",
    "merge",
    "train",
    "info",
    "runs",
    "grade",
    "verify",
    "oracle",
    "introspect",
    "report",
)
"""The commands, in the order ``mechintro --help`` lists them: each is the module
``mechintro.cli.<name>``."""


def command_module(name: str) -> ModuleType:
    """The module of the command ``name`` (one of :data:`COMMANDS`)."""
    return importlib.import_module(f"mechintro.cli.{name}")


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="mechintro", description="Concept-injection introspection experiments on open LMs."
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in COMMANDS:
        module = command_module(name)
        sub.add_parser(name, help=module.HELP, arguments=module.arguments)
    return p


def _quiet_hf_progress() -> None:
    """transformers draws its own progress bars on stderr; the CLI shows its own instead."""
    import transformers

    transformers.utils.logging.disable_progress_bar()


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's time limit, `kill`), handled like Ctrl-C: committed trials are
    kept."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated()


def _os_error(exc: OSError) -> str:
    """One line for an operating-system error: what happened, and what to do."""
    where = getattr(exc, "filename", "") or "I/O"
    if exc.errno == errno.EROFS:
        return f"{where} is on a read-only file system: choose an --out on a writable disk"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (
            f"permission denied for {where}: choose an --out you may write to, or fix its "
            "permissions"
        )
    if exc.errno == errno.ENOTDIR:
        return f"{where}: a part of this path is a file, not a directory: choose another --out"
    if exc.errno == errno.EISDIR:
        return f"{where} is a directory where a file was expected: check the path"
    return (
        f"{exc.strerror or exc} ({where}); fix the path or free disk space, then run the same "
        "command again "
        "(committed trials are kept)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    from mechintro.progress import is_default_on, set_default

    bars = is_default_on()
    try:
        return _main(argv, debug)
    finally:
        set_default(bars)  # -q lasts for this command only (main() is also called in-process)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str], debug: bool) -> int:
    try:
        args = _parser().parse_args(argv)
        logging.basicConfig(
            level=logging.WARNING if args.quiet else logging.INFO,
            format="%(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        for noisy in ("httpx", "urllib3", "transformers", "accelerate"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        _quiet_hf_progress()
        if args.quiet:
            from mechintro.progress import set_default

            set_default(False)  # the library's own bars (model loading, vectors) too
        return command_module(args.command).command(args)
    except MechintroError as exc:
        if debug:
            raise
        print(f"mechintro: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(
            "mechintro: interrupted; committed trials are kept — run the same command to resume",
            file=sys.stderr,
        )
        return 143 if isinstance(exc, _Terminated) else 130
    except OSError as exc:
        if debug:
            raise
        print(f"mechintro: error: {_os_error(exc)}", file=sys.stderr)
        _quiet_abandoned_writes()
        return 2


def _quiet_abandoned_writes() -> None:
    """After a failed write (a full disk), zarr's other chunk writes of that call are left pending
    in its event loop; at exit asyncio would log each ("Task was destroyed but it is pending!",
    with its traceback) and warn of coroutines never awaited, under the one line that said what
    happened, and each coroutine would raise "Event loop is closed" when collected. The store is
    safe (nothing was committed): cancel them and wait, then silence what is left."""
    import asyncio

    logging.getLogger("asyncio").setLevel(logging.CRITICAL + 1)
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited")
    sync = sys.modules.get("zarr.core.sync")
    loop = getattr(sync, "loop", [None])[0] if sync is not None else None
    if loop is None or loop.is_closed():
        return

    async def cancel_the_rest() -> None:
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    try:
        asyncio.run_coroutine_threadsafe(cancel_the_rest(), loop).result(timeout=30)
    except Exception:  # the loop is stopping anyway: what is left is silenced above
        logging.getLogger(__name__).debug("zarr's pending writes not cancelled", exc_info=True)


def script_main(main: Callable[[], int | None]) -> NoReturn:
    """Run a script's ``main`` as the CLI runs a command: a
    :class:`~mechintro.errors.MechintroError` prints its one line, prefixed with the script's
    name, and exits with status 2 — never a traceback.

    Example (the last lines of every script in ``scripts/``, ``analyses/`` and ``benchmarks/``)::

        if __name__ == "__main__":
            script_main(main)
    """
    try:
        code = main()
    except MechintroError as exc:
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code)
