"""PyInstaller entry point of `kiosk-provision` (the console script's target, frozen)."""
import sys

from provisioning.__main__ import main

sys.exit(main())
