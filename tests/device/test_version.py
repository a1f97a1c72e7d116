"""One software version for every program: the image's build stamp, else the package version
plus the checkout's git commit, the form build_image.sh names the package with."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from device import version as V

BIN = Path(sys.executable).parent
FORM = re.compile(r"\d+\.\d+\.\d+\+g[0-9a-f]{7,}(\.dirty)?")


@pytest.fixture(autouse=True)
def fresh():
    V.software_version.cache_clear()
    yield
    V.software_version.cache_clear()


def test_a_checkout_reports_package_version_and_commit() -> None:
    v = V.software_version()
    assert FORM.fullmatch(v), v
    head = subprocess.run(["git", "-C", str(V.REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert v.startswith(f"{metadata.version('interview-kiosk')}+g")
    assert v.split("+g")[1].split(".")[0] == head


def test_a_built_image_reports_its_stamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / V.BUILD_INFO).write_text(json.dumps(
        {"version": "0.1.0+gabc1234", "commit": "abc1234", "built": "2026-11-23T07:00:00Z"}))
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert V.software_version() == "0.1.0+gabc1234"


def test_no_git_and_no_stamp_is_the_plain_package_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)  # frozen, but the stamp is missing
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    monkeypatch.setattr(V, "REPO", tmp_path)  # not a checkout
    assert V.software_version() == metadata.version("interview-kiosk")


def test_every_program_prints_the_same_version() -> None:
    seen = {}
    for prog in ("interview-sync", "interview-hr", "kiosk-provision"):
        proc = subprocess.run([str(BIN / prog), "--version"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (prog, proc.stderr)
        name, _, v = proc.stdout.strip().partition(" ")
        assert name == prog
        seen[prog] = v
    assert len(set(seen.values())) == 1, seen
    assert FORM.fullmatch(seen["interview-sync"]), seen
