"""Writing a directory so that it appears whole or not at all."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_dir(path: Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write into; on success rename it to ``path``.

    Staging folders left by earlier killed writers are removed first. A failure (or a kill)
    leaves ``path`` as it was. With ``replace``, an existing ``path`` is swapped out.
    """
    for stale in path.parent.glob(path.name + ".partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = path.with_name(path.name + f".partial-{os.getpid()}")
    try:
        yield staging
        if replace:
            shutil.rmtree(path, ignore_errors=True)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
