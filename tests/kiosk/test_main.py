"""`interview-kiosk` as a technician meets it: help, version, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from device.version import software_version
from hardware.camera import FileCamera, OpenCVCamera
from hardware.microphone import FileMic, SoundDeviceMic
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
