"""The technician's CLI (`kiosk-provision`) and the pieces of it other code may reuse.

Never print or log a secret, a candidate's name or a transcript from here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

BUILD_INFO = "build-info.json"  # written into the PyInstaller bundle by build_image.sh


def version_string() -> str:
    """Package version plus the git commit it was built from, e.g. "0.1.0+g1a2b3c4"."""
    if getattr(sys, "frozen", False):
        info = Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent)) / BUILD_INFO
        try:
            return json.loads(info.read_text())["version"]
        except (OSError, ValueError, KeyError):
            pass
    try:
        version = metadata.version("interview-kiosk")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    repo = Path(__file__).resolve().parent.parent
    if (repo / ".git").exists():
        try:
            rev = subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip()
            if rev:
                version += f"+g{rev}"
        except (OSError, subprocess.SubprocessError):
            pass
    return version
