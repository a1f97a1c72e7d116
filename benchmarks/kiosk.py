"""Kiosk figures: a whole demo interview offscreen, printing the GUI thread's longest stall,
how long saving an answer takes after "I'm done", and the wall time. Run:
`QT_QPA_PLATFORM=offscreen .venv/bin/python -m benchmarks.kiosk`. Numbers only, no asserts.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    from kiosk.demo import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        code = run_demo(Path(tmp), headless=True)
        print(f"kiosk demo interview: exit {code}, {time.monotonic() - t0:.1f} s wall time")
    return code


if __name__ == "__main__":
    sys.exit(main())
