"""User-facing errors.

Every refusal mechintro makes because of bad input is a :class:`MechintroError` whose message is
one line naming the problem and the fix. The CLI prints that line and exits with status 2; the
Python API raises it (it subclasses :class:`ValueError`, so ``except ValueError`` also works).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


class MechintroError(ValueError):
    """Bad input or an unusable file: the message says what is wrong and how to fix it."""

    def __init__(self, message: str) -> None:
        if "\n" in message:
            raise AssertionError("MechintroError messages are one line")
        super().__init__(message)


def script_main(main: Callable[[], int | None]) -> NoReturn:
    """Run a script's ``main`` as the CLI runs a command: a :class:`MechintroError` prints its one
    line, prefixed with the script's name, and exits with status 2 — never a traceback.

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
