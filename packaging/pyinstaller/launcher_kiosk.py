"""PyInstaller entry point of `interview-kiosk` (the console script's target, frozen)."""
import sys

from kiosk.__main__ import main

sys.exit(main())
