"""The built Debian package (build_image.sh), extracted into a throw-away root: its layout,
its maintainer scripts, its units against the real bundled programs, each program's
--version, and the bundled kiosk-provision taking a device from init to a passing
selftest against file-backed camera and microphone, a real broker and the fake WeCom.

Runs only where a package exists: `make image` (or the CI's image step) builds it into
dist/; INTERVIEW_KIOSK_DEB points at another one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import cv2
import pytest

from device.config import load_settings
from device.script_demo import run as scripted_interview
from hardware.synthetic import held_up_code
from provisioning.configfile import update_config
from sync import pki
from sync.broker import LocalBroker
from sync.connector.service import Connector
from sync.connector.settings import ConnectorSettings
from sync.enrolment import write_bundle
from sync.wecom.fakeserver import FakeDirectory, FakeWecomServer
from tests.provisioning.conftest import DEVICE_ID, TENANT, TEST_FPS, WECOM, Site
from tests.provisioning.test_selftest import VOSK_KO

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = ("interview-kiosk", "interview-sync", "kiosk-provision")
UNITS = ("interview-kiosk.service", "interview-sync.service", "interview-retention.service",
         "interview-retention.timer")


def _package() -> Path | None:
    if os.environ.get("INTERVIEW_KIOSK_DEB"):
        return Path(os.environ["INTERVIEW_KIOSK_DEB"])
    debs = sorted((REPO / "dist").glob("interview-kiosk_*.deb"), key=lambda p: p.stat().st_mtime)
    return debs[-1] if debs else None


DEB = _package()
pytestmark = [
    pytest.mark.image,
    pytest.mark.skipif(DEB is None, reason="no package built: run `make image` (CI: the image step)"),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    r = tmp_path_factory.mktemp("root")
    subprocess.run(["dpkg-deb", "-x", str(DEB), str(r)], check=True, timeout=600)
    subprocess.run(["dpkg-deb", "-e", str(DEB), str(r / "DEBIAN")], check=True, timeout=60)
    return r


def _run(root: Path, prog: str, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    exe = root / "opt" / "interview-kiosk" / prog
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})})


def test_control_names_the_package_and_its_version(root: Path) -> None:
    control = (root / "DEBIAN" / "control").read_text()
    fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", control, re.M))
    assert fields["Package"] == "interview-kiosk"
    assert re.fullmatch(r"\d+\.\d+\.\d+\+g[0-9a-f]{7,}(\.dirty)?", fields["Version"])
    assert fields["Version"] == (root / "usr/share/interview-kiosk/VERSION").read_text().strip()
    assert int(fields["Installed-Size"]) > 100_000
    assert "fonts-wqy-microhei" in fields["Depends"]


def test_layout_programs_units_config(root: Path) -> None:
    for prog in PROGRAMS:
        exe = root / "opt/interview-kiosk" / prog
        assert exe.is_file() and os.access(exe, os.X_OK)
        link = root / "usr/bin" / prog
        assert link.is_symlink() and os.readlink(link) == f"/opt/interview-kiosk/{prog}"
    for unit in UNITS:
        assert (root / "lib/systemd/system" / unit).read_text() == (REPO / "systemd" / unit).read_text()
    from device.config import load_settings

    settings = load_settings(root / "usr/share/interview-kiosk/config.default.toml")
    assert str(settings.paths.data_dir) == "/var/lib/interview-kiosk"
    assert (root / "usr/share/interview-kiosk/examples/question_bank.xlsx").is_file()


def test_maintainer_scripts_create_the_kiosk_user_and_private_data_dir(root: Path) -> None:
    for script in ("postinst", "prerm", "postrm"):
        path = root / "DEBIAN" / script
        assert os.access(path, os.X_OK)
        subprocess.run(["sh", "-n", str(path)], check=True)
    postinst = (root / "DEBIAN/postinst").read_text()
    assert "useradd --system" in postinst and "--shell /usr/sbin/nologin" in postinst
    assert "install -d -o kiosk -g kiosk -m 0750" in postinst
    assert "-m 0700" in postinst  # the key directory


def test_every_program_answers_version(root: Path) -> None:
    version = (root / "usr/share/interview-kiosk/VERSION").read_text().strip()
    for prog in PROGRAMS:
        proc = _run(root, prog, "--version", timeout=180)
        assert proc.returncode == 0, (prog, proc.stdout, proc.stderr)
        assert prog in proc.stdout
    # device/version.py reads the bundle's build stamp (interview-kiosk: once kiosk/__main__.py uses it too)
    for prog in ("kiosk-provision", "interview-sync"):
        assert version in _run(root, prog, "--version").stdout, prog


def test_units_verify_against_the_bundled_programs(root: Path, tmp_path: Path) -> None:
    vroot = tmp_path / "vroot"
    shutil.copytree(root, vroot, symlinks=True, ignore=shutil.ignore_patterns("_internal"))
    shutil.copytree("/usr/lib/systemd/system", vroot / "usr/lib/systemd/system", symlinks=True,
                    dirs_exist_ok=True)
    for unit in UNITS:
        proc = subprocess.run(["systemd-analyze", "verify", f"--root={vroot}", "--man=no", unit],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and not proc.stderr.strip(), (unit, proc.stderr)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from hardware.synthetic import face_video, speak

    d = tmp_path_factory.mktemp("image-media")
    return (face_video(d / "face.avi", 3, fps=TEST_FPS, size=(640, 480)),
            speak("Hello, I am ready for the interview.", "en", d / "hello.wav"))


def test_bundled_programs_take_a_device_to_an_interview_at_hr(root: Path, tmp_path: Path, site: Site,
                                                              bundle_for, media) -> None:
    """The README's technician path with the package's own programs: init, enrol by showing
    the bundle's QR code to the camera, selftest, then an interview delivered by the bundled
    sync service (as interview-sync.service runs it) to HR's connector, receipted by it, and
    HR's WeCom "interview finished" message sent."""
    config = tmp_path / "etc" / "config.toml"
    env = {"INTERVIEW_KIOSK_CONFIG": str(config)}

    def kp(*args: str, **kw) -> subprocess.CompletedProcess:
        return _run(root, "kiosk-provision", "--lang", "en", *args, env=env, **kw)

    proc = kp("init", "--data-dir", str(tmp_path / "var"), "--device-id", DEVICE_ID)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bank = root / "usr/share/interview-kiosk/examples/question_bank.json"
    assert kp("bank", "import", str(bank)).returncode == 0
    proc = kp("models", "install", str(VOSK_KO), "--model-lang", "zh")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broker = LocalBroker(tmp_path / "broker", site.ca.cert, site.server.cert, site.server.key,
                         connectors=["hr-connector"])
    wecom = FakeWecomServer(FakeDirectory(users={u: {"userid": u, "name": u}
                                                 for u in WECOM["hr_oncall"]})).start()
    broker.start()
    hr: Connector | None = None
    try:
        # Enrolled through the bundled QR reader: the bundle's code held up to the camera.
        png = tmp_path / "bundle.png"
        write_bundle(bundle_for(tmp_path / "var/tls/device.csr", mqtt_port=broker.port),
                     tmp_path / "bundle.json", qr_png=png)
        card = tmp_path / "card.avi"
        writer = cv2.VideoWriter(str(card), cv2.VideoWriter_fourcc(*"MJPG"), 10, (1280, 720))
        for i in range(10):
            writer.write(held_up_code(png, frame_h=720, px_per_module=3.5, seed=i))
        writer.release()
        update_config(config, {"kiosk.camera": {"source": str(card)}})
        proc = kp("enrol", "--scan", "--scan-seconds", "60")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        from device.pin import hash_pin

        update_config(config, {"wecom": {"api_base_url": wecom.base_url},
                               "kiosk": {"technician_pin_hash": hash_pin("480613")},
                               "kiosk.camera": {"fps": TEST_FPS}})
        video, wav = media
        proc = kp("selftest", "--headless", "--camera-file", str(video), "--mic-file", str(wav),
                  "--seconds", "1.5", "--json")
        report = json.loads(proc.stdout)
        assert proc.returncode == 0, [c for c in report["checks"] if not c["ok"]]
        assert {"model_zh", "model_en", "camera_face", "broker", "wecom"} <= {c["name"] for c in report["checks"]}
        # The bundled sync daemon reaches the same broker with the enrolled certificate.
        proc = _run(root, "interview-sync", "--once", "--timeout", "30", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr

        # An interview on the terminal (the state machine of the development tree writing
        # into the device's store: the bundled kiosk needs a candidate's taps) ...
        hr = _connector(tmp_path, site, broker.port)
        with open(os.devnull, "w") as quiet:
            record = scripted_interview(load_settings(config), bank, None, out=quiet)
        # ... delivered by the bundled sync service, receipted by HR, HR told on WeCom.
        service = subprocess.Popen([str(root / "opt/interview-kiosk/interview-sync")],
                                   env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        try:
            results = _wait(lambda: hr.db.messages(kind="result"), 120, "the result at HR's connector")
            assert [m.id for m in results] == [record["id"]]

            def settled() -> dict | None:
                status = json.loads(kp("status", "--json").stdout)
                waiting = {k: n for k, n in status["outbox"]["by_kind"].items() if n}
                done = (not waiting and status["receipts"]["required"]
                        and status["receipts"]["unreceipted"] == 0)
                return status if done else None

            _wait(settled, 60, "outbox empty and every record receipted by HR")
            _wait(lambda: [m for m in wecom.messages_to(WECOM["hr_oncall"][0])
                           if "Interview finished" in json.dumps(m, ensure_ascii=False)],
                  60, "HR's WeCom message that the interview finished")
        finally:
            service.terminate()
            try:
                _, err = service.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                service.kill()
                _, err = service.communicate()
        assert service.returncode == 0, err[-3000:]
    finally:
        if hr is not None:
            hr.stop()
        broker.stop()
        wecom.stop()
    assert kp("audit", "verify").returncode == 0


def _connector(tmp_path: Path, site: Site, port: int) -> Connector:
    cert = pki.make_client_cert(site.ca, tmp_path / "hr-pki", "hr-connector")
    return Connector(ConnectorSettings.model_validate({
        "connector": {"name": "hr-connector", "data_dir": str(tmp_path / "hr")},
        "mqtt": {"host": "127.0.0.1", "port": port, "ca_file": str(site.ca.cert),
                 "cert_file": str(cert.cert), "key_file": str(cert.key)},
        "signing": {"private_key_file": str(site.hr_key_path), "tenant": TENANT},
    })).start()


def _wait(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := cond():
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_bundled_kiosk_starts_and_reports_ready(root: Path, tmp_path: Path, media) -> None:
    """What interview-kiosk.service waits for (Type=notify): READY=1 once the idle screen
    is up, here on Qt's offscreen platform with file-backed camera and microphone."""
    config = tmp_path / "config.toml"
    env = {"INTERVIEW_KIOSK_CONFIG": str(config), "QT_QPA_PLATFORM": "offscreen"}
    proc = _run(root, "kiosk-provision", "init", "--data-dir", str(tmp_path / "var"),
                "--device-id", DEVICE_ID, env=env)
    assert proc.returncode == 0, proc.stderr
    _run(root, "kiosk-provision", "bank", "import",
         str(root / "usr/share/interview-kiosk/examples/question_bank.json"), env=env)
    video, wav = media
    update_config(config, {"kiosk.camera": {"source": str(video), "fps": TEST_FPS},
                           "kiosk.microphone": {"device": str(wav)}})
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(5)
    kiosk = subprocess.Popen([str(root / "opt/interview-kiosk/interview-kiosk")],
                             env={**os.environ, **env, "NOTIFY_SOCKET": str(sock_path)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any("READY=1" in m for m in messages):
            if kiosk.poll() is not None:
                break
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
    finally:
        kiosk.terminate()
        try:
            _, err = kiosk.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            kiosk.kill()
            _, err = kiosk.communicate()
        sock.close()
    assert any("READY=1" in m for m in messages), err[-3000:]
