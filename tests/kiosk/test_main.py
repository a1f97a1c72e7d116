"""`interview-kiosk` as a technician meets it: help, version, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from device.version import software_version
from hardware.camera import FileCamera, OpenCVCamera
from hardware.microphone import FileMic, SoundDeviceMic
from hardware.selftest import MIN_DISPLAY
from kiosk.__main__ import display_scale
from kiosk.app import make_sources

EXE = [sys.executable, "-m", "kiosk"]


def test_help_and_version():
    out = subprocess.run(EXE + ["--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--demo" in out.stdout and "--headless" in out.stdout
    out = subprocess.run(EXE + ["--version"], capture_output=True, text=True, timeout=60)
    # The same version string as interview-sync, interview-hr and kiosk-provision (".dirty"
    # aside: the working tree may change between the two calls).
    assert out.returncode == 0
    assert out.stdout.strip().removesuffix(".dirty") == f"interview-kiosk {software_version().removesuffix('.dirty')}"


def test_a_missing_config_is_one_clear_line_not_a_traceback(tmp_path):
    missing = tmp_path / "nope.toml"
    out = subprocess.run(EXE + ["--config", str(missing), "--headless"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert str(missing) in out.stderr and "kiosk-provision init" in out.stderr
    assert "Traceback" not in out.stderr


def test_sources_come_from_the_config(make_settings, media, tmp_path):
    wav = Path(media["answers"][0])
    s = make_settings({"kiosk": {"camera": {"source": str(media["face"])},
                                 "microphone": {"device": str(wav)}}})
    cam, mic = make_sources(s)
    assert isinstance(cam, FileCamera) and isinstance(mic, FileMic)
    s = make_settings({"kiosk": {"camera": {"source": 0}, "microphone": {"device": ""}}})
    cam, mic = make_sources(s)
    assert isinstance(cam, OpenCVCamera) and isinstance(mic, SoundDeviceMic)
    assert mic.device is None


def test_a_display_smaller_than_1280x800_restarts_once_with_qt_scaling(tmp_path):
    """A 1024x600 panel (hardware.selftest.MIN_DISPLAY) runs the 1280x800 layout through
    Qt's scale factor; test_language checks that layout at the logical size it gets."""
    assert display_scale(*MIN_DISPLAY) == 0.75
    assert display_scale(1280, 800) is None and display_scale(1920, 1080) is None
    panel = tmp_path / "panel.json"
    panel.write_text(json.dumps({"screens": [{"name": "panel", "x": 0, "y": 0, "width": MIN_DISPLAY[0],
                                              "height": MIN_DISPLAY[1], "logicalDpi": 96, "dpr": 1}]}))
    env = {k: v for k, v in os.environ.items() if k != "QT_SCALE_FACTOR"}
    env["QT_QPA_PLATFORM"] = f"offscreen:configfile={panel}"
    missing = tmp_path / "nope.toml"
    out = subprocess.run(EXE + ["--config", str(missing)], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.stderr.count("restarting with QT_SCALE_FACTOR=0.75") == 1, out.stderr
    assert out.returncode == 2 and str(missing) in out.stderr   # the restarted run went on
