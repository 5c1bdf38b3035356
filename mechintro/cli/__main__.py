"""``python -m mechintro.cli``: the ``mechintro`` command."""

import sys

from mechintro.cli import main

sys.exit(main())
