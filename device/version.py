"""The software version every program reports (`--version`, status and heartbeat records):
the build stamp of a packaged image, else the installed package version plus the git commit
of a checkout, the same `<version>+g<hash>[.dirty]` form build_image.sh gives the package.
It never fails: a missing git or stamp only shortens the string.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

BUILD_INFO = "build-info.json"  # {"version", "commit", "built"}, written by build_image.sh into the bundle
PACKAGE = "interview-kiosk"
REPO = Path(__file__).resolve().parent.parent


def _stamped() -> str | None:
    """The version build_image.sh stamped into a frozen (PyInstaller) program, if any."""
    if not getattr(sys, "frozen", False):
        return None
    info = Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent)) / BUILD_INFO
    try:
        version = json.loads(info.read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return version if isinstance(version, str) and version else None


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


@functools.cache
def software_version() -> str:
    """E.g. "0.1.0+g1a2b3c4" (".dirty" when a checkout has uncommitted changes to tracked
    files, as build_image.sh marks such a build); "0.1.0" when installed without git."""
    stamped = _stamped()
    if stamped:
        return stamped
    try:
        version = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    if "+" in version or not (REPO / ".git").exists():
        return version
    rev = _git("rev-parse", "--short", "HEAD")
    if not rev:
        return version
    version += f"+g{rev}"
    if _git("status", "--porcelain", "--untracked-files=no"):
        version += ".dirty"
    return version
