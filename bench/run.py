"""Run every benchmark side by side with its peer; write bench/results/latest.md and plots.

    .venv/bin/python bench/run.py [--only NAME ...] [--timeout SECONDS] [--render-only]

Each ``bench/<name>.py`` runs as a subprocess with ``--json-out bench/results/<name>.json``
and a deadline; its output is echoed and kept in ``bench/results/raw/<name>.log``. Then the
harness (``tools/bench``, package ``chorus_bench``) renders one table with every row of every
bench into ``bench/results/latest.md`` and plots each latency distribution to
``bench/results/<name>-<n>.png``. A benchmark records, it does not judge: a script that fails
or times out is a "not measured" row, and this exits 0.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from chorus_bench.cli import main

if __name__ == "__main__":
    try:
        main(sys.argv[1:], root=Path(__file__).resolve().parent.parent)
    except Exception:
        traceback.print_exc()
        print("bench: the harness itself failed (above); no report written", file=sys.stderr)
    sys.exit(0)
