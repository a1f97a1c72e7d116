"""Fixtures for the technician CLI tests: the real `kiosk-provision` console script run as a
subprocess against a temp device, a site CA and HR signing key made with sync.pki, and
enrolment bundles made by the HR side's own code (sync.enrolment)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sync import pki
from sync.enrolment import make_bundle
from sync.signing import generate_signing_key, load_private_key

KIOSK_PROVISION = Path(sys.executable).parent / "kiosk-provision"
DEVICE_ID = "kiosk-prov-01"
TEST_FPS = 15
TENANT = "acme"


@dataclass
class Device:
    root: Path
    config: Path
    data_dir: Path

    @property
    def key_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def csr(self) -> Path:
        return self.data_dir / "tls" / "device.csr"


Runner = Callable[..., "Result"]


@pytest.fixture
def device_paths(tmp_path: Path) -> Device:
    return Device(tmp_path, tmp_path / "etc" / "config.toml", tmp_path / "var")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def kp(device_paths: Device, monkeypatch: pytest.MonkeyPatch) -> Runner:
    """Run kiosk-provision with the temp device's config. In-process through main(argv) by
    default (the same code the console script runs, without paying the interpreter start
    each time); `real=True` runs the installed console script as a subprocess."""

    def run(*args: str, input: str | None = None, lang: str = "en", env: dict | None = None,
            real: bool = False, timeout: float = 120) -> Result:
        full_env = {"INTERVIEW_KIOSK_CONFIG": str(device_paths.config), "COLUMNS": "250",
                    "NO_COLOR": "1", **(env or {})}
        argv = list(args)
        if lang and "--lang" not in args:
            argv += ["--lang", lang]
        if real:
            proc = subprocess.run([str(KIOSK_PROVISION), *argv], capture_output=True, text=True,
                                  input=input, env={**os.environ, **full_env}, timeout=timeout,
                                  cwd=device_paths.root)
            return Result(proc.returncode, proc.stdout, proc.stderr)
        from provisioning.__main__ import main

        out, err = io.StringIO(), io.StringIO()
        with monkeypatch.context() as m:
            for k, v in full_env.items():
                m.setenv(k, v)
            m.chdir(device_paths.root)
            m.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((input or "").encode())))
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(argv)
        return Result(code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture
def device(kp: Runner, device_paths: Device) -> Device:
    """An initialised device (kiosk-provision init)."""
    proc = kp("init", "--config", str(device_paths.config), "--data-dir",
              str(device_paths.data_dir), "--device-id", DEVICE_ID)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from provisioning.configfile import update_config

    # The test videos play at 15 fps: half the decoding of 30 on a loaded CI machine.
    update_config(device_paths.config, {"kiosk.camera": {"fps": TEST_FPS}})
    return device_paths


def as_json(proc: Result):
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


@dataclass
class Site:
    dir: Path
    ca: pki.CertPair
    server: pki.CertPair
    hr_key_path: Path

    @property
    def hr_key(self):
        return load_private_key(self.hr_key_path)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    d = tmp_path_factory.mktemp("site")
    ca = pki.make_ca(d / "ca")
    server = pki.make_server_cert(ca, d, ["127.0.0.1", "localhost"])
    generate_signing_key(d / "hr-signing.key", d / "hr-signing.pub")
    return Site(d, ca, server, d / "hr-signing.key")


WECOM = {"corp_id": "wwfakecorp0001", "agent_id": 1000002, "secret": "fake-secret-0123456789",
         "redirect_uri": "https://kiosk.example.internal:8443/wecom/callback", "hr_oncall": ["zhangwei"]}


@pytest.fixture
def bundle_for(site: Site) -> Callable[..., dict]:
    """An enrolment bundle for a CSR, made by the HR side's code (interview-hr enrol-device)."""

    def make(csr: Path, *, device_id: str = DEVICE_ID, mqtt_port: int = 8883,
             wecom: dict | None = WECOM, **kw) -> dict:
        return make_bundle(ca=site.ca, csr_pem=csr.read_bytes(), signing_key=site.hr_key,
                           tenant=TENANT, device_id=device_id, mqtt_host="127.0.0.1",
                           mqtt_port=mqtt_port, wecom=dict(wecom) if wecom else None,
                           site_name="上海总部 前台", company_name="示例科技", **kw)

    return make
