"""PyInstaller entry point of `interview-sync` (the console script's target, frozen)."""
import sys

from sync.__main__ import main

sys.exit(main())
