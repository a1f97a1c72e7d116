"""The WeCom tools as separate processes, as the demo and a technician use them: the fake
WeCom server, the WeCom part of the sync service, and the simulated phone."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device import signin
from device.roster import install_roster
from device.store import Store
from tests.sync.wecom_env import free_port, roster_for

REPO = Path(__file__).resolve().parents[2]


def wait_line(proc: subprocess.Popen, pattern: str, timeout: float = 30.0) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise AssertionError(f"process exited {proc.returncode}: {proc.stderr.read()}")
            continue
        m = re.search(pattern, line)
        if m:
            return m
    raise AssertionError(f"no line matching {pattern!r} within {timeout}s")


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []

    def start(*args: str, stdin: str | None = None) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.PIPE if stdin is not None else None, text=True)
        started.append(p)
        if stdin is not None:
            p.stdin.write(stdin)
            p.stdin.close()
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def test_demo_path_with_real_processes(procs, make_settings, tmp_path, config_path):
    fake = procs("-m", "sync.wecom.fakeserver", "--port", "0", "--users", str(REPO / "examples" / "wecom_directory.json"))
    root = wait_line(fake, r"listening on (http://\S+) ").group(1)
    port = free_port()
    settings = make_settings({"wecom": {
        "corp_id": "wwdemo0000000001", "agent_id": 1000002, "api_base_url": root + "/cgi-bin/",
        "redirect_uri": f"http://127.0.0.1:{port}/wecom/callback", "callback_host": "127.0.0.1",
        "callback_port": port, "hr_oncall": ["HRZhang"]}})
    cfg = tmp_path / "wecom.toml"
    import tomli_w

    cfg.write_text(tomli_w.dumps(settings.model_dump(mode="json", exclude_none=True)), encoding="utf-8")
    sealed = procs("-m", "sync.wecom", "--config", str(cfg), "--set-secret-stdin", stdin="demo-secret-not-a-real-one\n")
    assert sealed.wait(timeout=60) == 0, sealed.stderr.read()
    assert "demo-secret" not in cfg.read_text()
    store = Store.open_from_settings(settings)
    try:
        install_roster(store, roster_for(time.time(), settings.device.id))
        service = procs("-m", "sync.wecom", "--config", str(cfg))
        wait_line(service, r"sign-in callback on")
        qr = signin.new_qr_state(store, settings, time.time())
        phone = procs("-m", "sync.wecom.phone", qr.url, "--fake", root, "--as", "zhang.san")
        # zhang.san is on the test roster but not in the demo directory: WeCom still knows
        # the code (the fake mints it), so the roster decides.
        assert phone.wait(timeout=60) == 0, phone.stderr.read()
        assert "签到成功" in phone.stdout.read()
        row = signin.take_verification(store, settings.device.id)
        assert row.ok and row.roster_entry.entry_id == "E-member"
    finally:
        store.close()


def test_one_process_demo_mode_with_its_own_fake_wecom(procs, make_settings, tmp_path):
    port = free_port()
    settings = make_settings({"wecom": {
        "corp_id": "wwdemo0000000001", "agent_id": 1000002,
        "redirect_uri": f"http://127.0.0.1:{port}/wecom/callback", "callback_host": "127.0.0.1",
        "callback_port": port, "hr_oncall": ["HRZhang"]}})
    cfg = tmp_path / "demo.toml"
    import tomli_w

    cfg.write_text(tomli_w.dumps(settings.model_dump(mode="json", exclude_none=True)), encoding="utf-8")
    store = Store.open_from_settings(settings)
    try:
        install_roster(store, roster_for(time.time(), settings.device.id))
        service = procs("-m", "sync.wecom", "--config", str(cfg), "--fake-wecom",
                        str(REPO / "examples" / "wecom_directory.json"))
        root = wait_line(service, r"fake WeCom: (http://\S+)").group(1)
        wait_line(service, r"sign-in callback on")
        qr = signin.new_qr_state(store, settings, time.time())
        phone = procs("-m", "sync.wecom.phone", qr.url, "--fake", root, "--as", "openid:o-candidate-7")
        assert phone.wait(timeout=60) == 0, phone.stderr.read()
        row = signin.take_verification(store, settings.device.id)
        # E-external is booked for a site; this device has no site name: refused, and said so.
        assert row is not None and row.reason == "wrong_device"
        phone = procs("-m", "sync.wecom.phone", signin.new_qr_state(store, settings, time.time()).url,
                      "--fake", root, "--as", "zhang.san")
        assert phone.wait(timeout=60) == 0 and "签到成功" in phone.stdout.read()
        assert signin.take_verification(store, settings.device.id).roster_entry.entry_id == "E-member"
    finally:
        store.close()
