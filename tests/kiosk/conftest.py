"""A real kiosk offscreen: the window, the session machine, an encrypted store, and
file-backed camera/microphone playing a synthetic face video and espeak-ng answers."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2  # noqa: F401  (imported before kiosk.qt so its Qt paths get cleared)
import numpy as np
import pytest

import kiosk.qt  # noqa: F401  (clears OpenCV's Qt variables before pytest-qt makes the app)
from hardware.camera import FileCamera
from hardware.microphone import FileMic
from hardware.synthetic import face_video, speak
from kiosk.demo import examples_dir, install_demo_content
from kiosk.pin import hash_pin

log = logging.getLogger(__name__)

PIN = "8642"
ANSWER_TEXTS = (
    "I built a booking project with my team for many users.",
    "I read the logs, found the root cause and wrote a fix and a test.",
)


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Synthetic media shared by the kiosk tests (made once per run)."""
    d = tmp_path_factory.mktemp("kiosk-media")
    return {
        "face": face_video(d / "face.avi", 4.0, fps=15, size=(480, 360)),
        # present long enough for sign-in and the device check, then gone, then back
        "leaving": face_video(d / "leaving.avi", 24.0, fps=10, size=(320, 240),
                              script=[("present", 10.0), ("absent", 5.0), ("present", 10.0)]),
        "answers": [speak(t, "en", d / f"answer{i}.wav") for i, t in enumerate(ANSWER_TEXTS)],
    }


class Clock:
    """Wall clock with a test-controlled offset (PIN lockout expiry without waiting)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Kiosk:
    window: object
    machine: object
    pipeline: object
    camera: FileCamera
    mic: FileMic
    settings: object
    store: object
    code: str
    clock: Clock
    shots_dir: Path
    qtbot: object
    shots: list[Path] = field(default_factory=list)

    @property
    def state(self) -> str:
        return str(self.machine.state.value)

    def wait_state(self, state: str, timeout: float = 20.0) -> None:
        self.qtbot.waitUntil(lambda: self.state == state, timeout=int(timeout * 1000))
        self.qtbot.wait(50)  # let the queued view reach the window

    def shot(self, name: str, expect: list[str]) -> Path:
        """Save the window as PNG, check it is not blank and that the current screen shows
        the expected texts (widget texts, not pixels)."""
        path = self.shots_dir / f"{len(self.shots) + 1:02d}-{name}.png"
        img = self.window.grab().toImage()
        assert img.save(str(path)), path
        ptr = img.constBits()
        arr = np.frombuffer(ptr, dtype=np.uint8, count=img.sizeInBytes())
        assert arr.std() > 10, f"{name}: screenshot looks blank"
        texts = " | ".join(self.window.current_screen().texts())
        for e in expect:
            assert e in texts, f"{name}: {e!r} not on screen; shown: {texts}"
        self.shots.append(path)
        return path

    def sign_in(self) -> None:
        w = self.window
        w.idle.code_btn.click()
        w.idle.type_code(self.code)
        w.idle.code_page.ok.click()
        self.wait_state("welcome")

    def pass_device_check(self) -> None:
        self.wait_state("device_check")
        self.qtbot.waitUntil(lambda: self.window.check.go.isEnabled(), timeout=20000)
        self.window.check.go.click()


@pytest.fixture
def make_kiosk(qtbot, make_settings, store, tmp_path, media, request):
    """make_kiosk(video=..., loop=True, questions=2, settings overrides) -> a started Kiosk."""
    from kiosk.app import build_kiosk

    made: list[Kiosk] = []
    # KIOSK_TEST_SCREENS keeps the screenshots somewhere stable to look at after the run.
    keep = os.environ.get("KIOSK_TEST_SCREENS")
    shots_root = (Path(keep) / request.node.name) if keep else tmp_path / "screens"
    shots_root.mkdir(parents=True, exist_ok=True)

    def make(video: str = "face", *, loop: bool = True, questions: int = 2, **overrides) -> Kiosk:
        cfg = {
            "device": {"company_name": "星河科技 Galaxy Tech", "site_name": "上海总部",
                       "site_location": "1F 前台"},
            "session": {"face_lost_pause_s": 1.0},
            "kiosk": {"technician_pin_hash": hash_pin(PIN), "fullscreen": False},
        }
        for k, v in overrides.items():
            cfg.setdefault(k, {}).update(v)
        settings = make_settings(cfg)
        code = install_demo_content(store, examples_dir(), settings.device.id,
                                    questions=("swe-01", "swe-02", "swe-03")[:questions],
                                    prep_s=20, answer_s=30)
        camera = FileCamera(media.get(video, video), pace="real", loop=loop)  # a name, or a path
        mic = FileMic(None, pace="real")
        clock = Clock()
        machine, pipeline, window = build_kiosk(settings, store, camera, mic, clock=clock, lang="zh")
        if pipeline.analysis is not None:
            # The models load in the child first; the video's clock starts with window.start().
            assert pipeline.analysis.wait_ready(90), "analysis process did not start"
        qtbot.addWidget(window)
        window.setFixedSize(1280, 800)
        window.show()
        window.start()
        k = Kiosk(window, machine, pipeline, camera, mic, settings, store, code, clock,
                  shots_root, qtbot)
        made.append(k)
        return k

    yield make
    for k in made:
        log.info("GUI thread max stall %.0f ms (%d samples, %d over 50 ms)",
                 k.window.stall.max_stall_ms, k.window.stall.samples, k.window.stall.stalls_over_50ms)
        k.window.allow_close = True
        k.window.stop()
