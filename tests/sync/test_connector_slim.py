"""The HR connector's slim install (docs/connector.md): the wheel `make wheel` builds,
installed with --no-deps into a fresh venv, plus sync/connector/requirements.txt from PyPI.
That venv's `interview-hr` must do IT's whole job (example-config, clip-key, enrol-device
--qr, publish-bank of a spreadsheet, serve under systemd's notify protocol storing a
terminal's result, devices, clip export) without any of the terminal's stack installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.broker import free_port
from sync.connector.service import open_db
from tests.sync.conftest import DEVICE, DaemonThread, connector_config, wait_for
from tests.sync.test_connector_service import REPO, NotifySocket, _publish_result, _serve, _stop

REQUIREMENTS = REPO / "sync/connector/requirements.txt"
EXAMPLES = REPO / "examples"
# The terminal's heavy parts (distribution names, import names), none of which the connector loads.
TERMINAL_DISTS = ("pyside6", "pyside6-essentials", "shiboken6", "mediapipe", "jax", "jaxlib",
                  "opencv-python", "opencv-contrib-python", "opencv-python-headless", "vosk",
                  "scipy")
TERMINAL_MODULES = ("PySide6", "mediapipe", "cv2", "vosk", "jax", "scipy")


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    """systemd's end of $NOTIFY_SOCKET (as in test_connector_service)."""
    s = NotifySocket()
    yield s
    s.close()


def _requirement_name(spec: str) -> str:
    return re.split(r"[\[<>=!~ ;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _requirements() -> dict[str, str]:
    """name -> the requirement line without its comment."""
    out = {}
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        spec = line.split("#", 1)[0].strip()
        if spec:
            out[_requirement_name(spec)] = spec
    return out


@pytest.fixture(scope="module")
def slim(tmp_path_factory) -> Iterator[Path]:
    """A fresh venv holding the wheel (no dependencies) and the connector's requirements only.
    Uses pip's cache when there is one (CI keeps it), PyPI otherwise."""
    d = tmp_path_factory.mktemp("slim")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def run(*cmd: str | Path) -> None:
        r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300,
                           env=env, cwd=d)
        assert r.returncode == 0, f"{cmd}:\n{r.stdout}\n{r.stderr}"

    # Built the way `make wheel` builds it (offline, no build isolation).
    run(REPO / ".venv/bin/python", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "-q", "-w", d / "dist", REPO)
    (wheel,) = (d / "dist").glob("interview_kiosk-*.whl")
    # INTERVIEW_HR_SLIM_PYTHON: try the install with another interpreter (IT's server may
    # have a newer Python than the terminal's 3.11).
    run(os.environ.get("INTERVIEW_HR_SLIM_PYTHON", sys.executable), "-m", "venv", d / "venv")
    py = d / "venv/bin/python"
    # The order docs/connector.md gives: requirements first, so pip has nothing to report
    # about the wheel's terminal dependencies it is told not to install.
    run(py, "-m", "pip", "install", "-q", "-r", REQUIREMENTS)
    run(py, "-m", "pip", "install", "-q", "--no-deps", wheel)
    yield d / "venv"
    # 120 MB a run: pytest keeps the last three runs' temp dirs.
    shutil.rmtree(d, ignore_errors=True)


def _hr(slim: Path, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(slim / "bin/interview-hr"), *map(str, args)], capture_output=True,
                          text=True, timeout=120, env=env, cwd=cwd)


def _slim_python(slim: Path, code: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """python -c in the slim venv; cwd is a temp dir so the source tree cannot be imported."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(slim / "bin/python"), "-c", code, *args], capture_output=True,
                          text=True, timeout=60, env=env, cwd=cwd)


def test_requirements_keep_the_bounds_of_pyproject() -> None:
    """The slim list may only leave packages out, never ask for other versions than the wheel."""
    deps = {_requirement_name(s): s for s in
            tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    for name, spec in _requirements().items():
        assert name in deps, f"{name}: in requirements.txt but not a dependency in pyproject.toml"
        assert spec.replace(" ", "") == deps[name].replace(" ", ""), f"{spec} vs pyproject's {deps[name]}"
    for name in TERMINAL_DISTS:
        assert name not in _requirements()


def test_slim_venv_has_every_subcommand_and_none_of_the_terminal_stack(slim, tmp_path) -> None:
    r = _slim_python(slim, "import json, sys, importlib.util as u, sync; print(json.dumps("
                     "[sync.__file__, [m for m in sys.argv[1:] if u.find_spec(m)]]))", tmp_path,
                     *TERMINAL_MODULES)
    assert r.returncode == 0, r.stderr
    where, found = json.loads(r.stdout)
    assert where.startswith(str(slim)), f"sync imported from {where}, not the installed wheel"
    assert found == [], f"the terminal's stack in the slim venv: {found}"
    listed = subprocess.run([str(slim / "bin/python"), "-m", "pip", "list", "--format=json"],
                            capture_output=True, text=True, timeout=60, check=True).stdout
    names = {p["name"].lower().replace("_", "-") for p in json.loads(listed)}
    assert not names & set(TERMINAL_DISTS), names & set(TERMINAL_DISTS)
    # Subcommands from other modules register only if they import (EXTENSIONS): all must.
    r = _hr(slim, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for cmd in ("serve", "publish-bank", "publish-roster", "publish-config", "command", "devices",
                "example-config", "signing-key", "enrol-device", "invite", "wecom-relay",
                "clip-key", "clip"):
        assert re.search(rf"^\s+{cmd}\b", r.stdout, re.M), f"`{cmd}` missing:\n{r.stdout}"


def test_slim_enrols_a_device_with_a_readable_qr_code(
        slim, site_pki, broker_port, https_port, hr_key_path, hr_config_file, tmp_path) -> None:
    import cv2

    from device.qr import read_qr
    from device.signin import INVITATION_PREFIX, decode_invitation
    from sync import pki
    from sync.enrolment import bundle_qr_text
    from sync.signing import load_public_key, verify_document

    r = _hr(slim, "example-config", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (REPO / "sync/connector/example-config.toml").read_text(encoding="utf-8")
    tomllib.loads(r.stdout)

    clip_key = tmp_path / "clips.key"
    r = _hr(slim, "clip-key", clip_key, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = hr_config_file(connector_config(tmp_path, site_pki, broker_port, https_port, hr_key_path,
                                          signing={"clip_key_file": str(clip_key)}))
    csr = tmp_path / "device.csr"
    csr.write_bytes(pki.make_csr(tmp_path / "client.key", "kiosk-slim-01"))
    out, png = tmp_path / "bundle.json", tmp_path / "bundle.png"
    r = _hr(slim, "--config", cfg, "enrol-device", csr, "--out", out, "--qr", png,
            "--ca-cert", site_pki.ca.cert, "--ca-key", site_pki.ca.key,
            "--mqtt-host", "mqtt.example.internal", "--site", "上海总部 前台", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    bundle = json.loads(out.read_text(encoding="utf-8"))
    verify_document(load_public_key(hr_key_path.with_suffix(".pub")), bundle)
    pki.verify_issued_by(bundle["cert_pem"].encode(), bundle["ca_pem"].encode())
    assert bundle["device_id"] == "kiosk-slim-01" and bundle.get("clip_public_key_pem")
    # What the terminal's camera reader makes of the PNG the slim install drew.
    assert read_qr(cv2.imread(str(png))) == bundle_qr_text(bundle)

    # The other QR code HR draws: an invitation, signed with the HR key.
    invitation = tmp_path / "invite.png"
    r = _hr(slim, "--config", cfg, "invite", "--roster", EXAMPLES / "roster.json",
            "--entry", "R-20261123-001", "--out", invitation, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    claims, body, sig = decode_invitation(read_qr(cv2.imread(str(invitation)), INVITATION_PREFIX))
    load_public_key(hr_key_path.with_suffix(".pub")).verify(sig, body)
    assert claims["device"] == "demo-kiosk-01"


def test_slim_exports_clips_and_names_opencv_only_for_mp4(slim, tmp_path) -> None:
    code = """
import sys, wave
from pathlib import Path
from device.mediacrypt import MediaError
from sync.connector.clips import write_export
pcm = bytes(range(256)) * 64
print(write_export({"kind": "audio", "channels": 1, "samplerate": 16000}, [(0.0, pcm)], Path("a.wav")))
frames = [(0.0, b"\\xff\\xd8one\\xff\\xd9"), (0.1, b"\\xff\\xd8two\\xff\\xd9")]
print(write_export({"kind": "video", "fps": 10}, frames, Path("v.mjpeg")))
try:
    write_export({"kind": "video", "fps": 10}, frames, Path("v.mp4"))
except MediaError as e:
    print("refused:", e)
"""
    r = _slim_python(slim, code, tmp_path)
    assert r.returncode == 0, r.stderr
    fmt_wav, fmt_mjpeg, refused = r.stdout.splitlines()
    assert (fmt_wav, fmt_mjpeg) == ("wav", "mjpeg")
    with wave.open(str(tmp_path / "a.wav")) as w:
        assert w.getframerate() == 16000 and w.readframes(w.getnframes()) == bytes(range(256)) * 64
    assert (tmp_path / "v.mjpeg").read_bytes() == b"\xff\xd8one\xff\xd9\xff\xd8two\xff\xd9"
    assert refused.startswith("refused: v.mp4:") and ".mjpeg" in refused
    assert "opencv-python-headless" in refused
    assert not (tmp_path / "v.mp4").exists()


def test_slim_serves_relays_publishes_a_spreadsheet_bank_and_stores_a_result(
        slim, hr_config_file, broker_on_port, broker_port, https_port, site_pki, hr_key_path,
        sync_settings, notify, tmp_path, monkeypatch) -> None:
    import httpx

    from device.signin import state_for

    monkeypatch.delenv("PYTHONPATH", raising=False)
    relay_port = free_port()
    hr_settings = connector_config(tmp_path, site_pki, broker_port, https_port, hr_key_path,
                                   relay={"redirect_uri": "https://hr.example/wecom/callback",
                                          "listen_host": "127.0.0.1", "port": relay_port})
    cfg = hr_config_file(hr_settings)
    broker = broker_on_port()
    broker.start()
    log = tmp_path / "serve.log"
    p = _serve(cfg, notify, log, hr_bin=slim / "bin/interview-hr")
    try:
        wait_for(lambda: "READY=1" in notify.lines() or p.poll() is not None, 40, what="READY=1")
        assert p.poll() is None, log.read_text()
        _publish_result(broker_port, site_pki, "r-slim-1")
        db, _ = open_db(hr_settings)
        try:
            wait_for(lambda: db.count_messages("result") == 1, 15, what="result stored")
        finally:
            db.close()

        with DaemonThread(sync_settings()) as d:
            got: list[dict] = []
            d.daemon.cache.register_command("wecom_signin", got.append)
            wait_for(d.daemon.link.connected.is_set, 10, what="terminal connected")
            # A phone's WeCom redirect reaches the slim connector's relay, then the terminal.
            state = state_for(DEVICE)
            r = httpx.get(f"http://127.0.0.1:{relay_port}/wecom/callback",
                          params={"code": "CODE123", "state": state})
            assert r.status_code == 200
            wait_for(lambda: got, 10, what="relayed sign-in")
            # A real terminal takes the signed bank the slim install made from the spreadsheet.
            r = _hr(slim, "--config", cfg, "publish-bank", EXAMPLES / "question_bank.xlsx",
                    "--device", DEVICE, cwd=tmp_path)
            assert r.returncode == 0, r.stderr
            wait_for(lambda: d.store.cache_get("questionbank", "current"), 20, what="bank installed")
        pushed = tmp_path / "pushed.toml"
        pushed.write_text("[retention]\ndays = 7\n", encoding="utf-8")
        for args in (("publish-roster", EXAMPLES / "roster.json"), ("publish-config", pushed),
                     ("command", "heartbeat")):
            r = _hr(slim, "--config", cfg, *args, "--device", DEVICE, cwd=tmp_path)
            assert r.returncode == 0 and "to 1 device(s)" in r.stdout, (args, r.stderr)
        r = _hr(slim, "--config", cfg, "clip", "list", cwd=tmp_path)
        assert r.returncode == 0 and r.stdout.strip() == "no clips", r.stderr
    finally:
        rc = _stop(p)
    assert rc == 0, log.read_text()
    assert got[0]["code"] == "CODE123"
    r = _hr(slim, "--config", cfg, "devices", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [d["device_id"] for d in json.loads(r.stdout)] == [DEVICE]
