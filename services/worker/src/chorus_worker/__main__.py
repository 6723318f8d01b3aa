"""``python -m chorus_worker``: see :mod:`chorus_worker.cli`."""

from __future__ import annotations

import sys

from chorus_worker.cli import main

if __name__ == "__main__":
    sys.exit(main())
