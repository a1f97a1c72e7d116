"""The technician's CLI (`kiosk-provision`) and the pieces of it other code may reuse.

Never print or log a secret, a candidate's name or a transcript from here.
"""

from __future__ import annotations

from device.version import software_version


def version_string() -> str:
    """Package version plus the git commit it was built from, e.g. "0.1.0+g1a2b3c4" (one
    definition for every program: device/version.py)."""
    return software_version()
