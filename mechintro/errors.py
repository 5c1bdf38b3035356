"""User-facing errors.

Every refusal mechintro makes because of bad input is a :class:`MechintroError` whose message is
one line naming the problem and the fix. The CLI prints that line and exits with status 2; the
Python API raises it (it subclasses :class:`ValueError`, so ``except ValueError`` also works).
"""

from __future__ import annotations


class MechintroError(ValueError):
    """Bad input or an unusable file: the message says what is wrong and how to fix it."""

    def __init__(self, message: str) -> None:
        if "\n" in message:
            raise AssertionError("MechintroError messages are one line")
        super().__init__(message)
