"""Hardware self-test: camera rate and a visible face, microphone floor and level, display,
free disk and clock, each with a pass/fail and a hint in Chinese and English.

Used by the kiosk's device-check screen and by `kiosk-provision selftest`. It only
observes: it never changes device settings and never stores a picture or a recording.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hardware.microphone import FLOOR_DBFS, is_clipping, level_dbfs

log = logging.getLogger(__name__)

MIN_FREE_DISK_GB = 2.0
MIN_DISPLAY = (1024, 600)
NOISE_FLOOR_MAX_DBFS = -40.0      # a quieter room than this is needed for speech recognition
DEAD_MIC_DBFS = -90.0             # exact digital silence = muted or disconnected input
EARLIEST_PLAUSIBLE = 1735689600.0  # 2025-01-01: a clock before this lost its RTC/NTP time


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    value: str
    hint_zh: str = ""
    hint_en: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    def hint(self, lang: str) -> str:
        return self.hint_zh if lang == "zh" else self.hint_en


FaceDetector = Callable[[np.ndarray], int]


def haar_face_detector() -> FaceDetector:
    """OpenCV's bundled frontal-face Haar cascade: a fallback that needs no model files."""
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        raise RuntimeError("OpenCV Haar cascade missing from cv2.data.haarcascades")

    def count(image: np.ndarray) -> int:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        scale = 320.0 / max(gray.shape[1], 1)
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale)
        faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))
        return len(faces)

    return count


def check_camera(camera, expected_fps: float, duration_s: float,
                 face_detector: FaceDetector | None) -> list[CheckResult]:
    started_here = False
    if not camera.alive:
        try:
            camera.start()
            started_here = True
        except Exception as exc:
            return [CheckResult("camera", False, str(exc),
                                "摄像头无法打开，请检查连接线并重新插拔。",
                                "The camera could not be opened: check the cable and replug it.")]
    try:
        first = camera.read(timeout=3.0)
        if first is None:
            return [CheckResult("camera", False, "no frames",
                                "摄像头没有画面，请检查连接线。",
                                "The camera delivers no picture: check the cable.")]
        frames = [first]
        t_end = time.monotonic() + duration_s
        while time.monotonic() < t_end and camera.alive:
            f = camera.read(timeout=0.5)
            if f is not None and f.index != frames[-1].index:
                frames.append(f)
        span = frames[-1].ts - frames[0].ts
        rate = (len(frames) - 1) / span if span > 0 else 0.0
    finally:
        if started_here:
            camera.stop()
    results = []
    rate_ok = rate >= 0.7 * expected_fps
    results.append(CheckResult(
        "camera_rate", rate_ok, f"{rate:.1f} fps (expected {expected_fps:g})",
        "" if rate_ok else "摄像头帧率过低：请改善照明或换用 USB 3.0 接口。",
        "" if rate_ok else "Camera frame rate too low: improve lighting or use a USB 3 port."))
    detector = face_detector or haar_face_detector()
    # Look at a few frames spread over the window: one blink or turn should not fail it.
    sample = frames[:: max(1, len(frames) // 5)][:5]
    faces = 0
    for f in sample:
        try:
            faces = max(faces, int(detector(f.image)))
        except Exception:
            log.exception("face detector failed during self-test")
    results.append(CheckResult(
        "camera_face", faces >= 1, f"{faces} face(s)",
        "" if faces else "未检测到人脸：请站在摄像头正前方，脸部位于画面中央，并保证光线充足。",
        "" if faces else "No face detected: stand in front of the camera, face centred, in good light."))
    bright = float(np.mean(frames[-1].image))
    results.append(CheckResult(
        "camera_light", 40 <= bright <= 220, f"mean brightness {bright:.0f}/255",
        "" if 40 <= bright <= 220 else ("画面太暗，请打开灯光。" if bright < 40 else "画面过曝，请避免正对强光。"),
        "" if 40 <= bright <= 220 else ("The picture is too dark: turn on a light." if bright < 40
                                        else "The picture is overexposed: avoid facing a bright light.")))
    return results


def check_microphone(mic, duration_s: float) -> list[CheckResult]:
    started_here = False
    if not mic.alive:
        try:
            mic.start()
            started_here = True
        except Exception as exc:
            return [CheckResult("microphone", False, str(exc),
                                "麦克风无法打开，请检查连接。",
                                "The microphone could not be opened: check its connection.")]
    levels: list[float] = []
    clipped = False
    try:
        t_end = time.monotonic() + duration_s
        while time.monotonic() < t_end:
            chunk = mic.read(timeout=0.5)
            if chunk is None:
                if not mic.alive:
                    break
                continue
            levels.append(level_dbfs(chunk.pcm))
            clipped = clipped or is_clipping(chunk.pcm)
    finally:
        if started_here:
            mic.stop()
    if not levels:
        return [CheckResult("microphone", False, "no audio",
                            "麦克风没有声音输入，请检查连接和静音开关。",
                            "The microphone delivers no audio: check the connection and mute switch.")]
    floor = float(np.percentile(levels, 10))
    peak = float(max(levels))
    results = []
    dead = floor <= DEAD_MIC_DBFS and peak <= DEAD_MIC_DBFS
    floor_ok = not dead and floor <= NOISE_FLOOR_MAX_DBFS
    results.append(CheckResult(
        "mic_noise_floor", floor_ok, f"{floor:.1f} dBFS",
        "" if floor_ok else ("麦克风静音或已断开，请检查。" if dead else "环境噪声过大，请关门或远离噪声源。"),
        "" if floor_ok else ("The microphone is muted or disconnected." if dead
                             else "Too much background noise: close the door or move away from the noise.")))
    results.append(CheckResult(
        "mic_level", not clipped, f"peak {peak:.1f} dBFS" + (" (clipping)" if clipped else ""),
        "" if not clipped else "声音过载：请调低麦克风增益或离远一些。",
        "" if not clipped else "The sound is clipping: lower the microphone gain or step back."))
    return results


def check_display(size: tuple[int, int] | None) -> list[CheckResult]:
    if size is None:
        return []
    w, h = size
    ok = max(w, h) >= MIN_DISPLAY[0] and min(w, h) >= MIN_DISPLAY[1]
    return [CheckResult(
        "display", ok, f"{w}x{h}",
        "" if ok else f"屏幕分辨率过低（至少 {MIN_DISPLAY[0]}x{MIN_DISPLAY[1]}）。",
        "" if ok else f"Display resolution too low (at least {MIN_DISPLAY[0]}x{MIN_DISPLAY[1]}).")]


def check_disk(path: Path) -> list[CheckResult]:
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free_gb = shutil.disk_usage(probe).free / 1e9
    ok = free_gb >= MIN_FREE_DISK_GB
    return [CheckResult(
        "disk_free", ok, f"{free_gb:.1f} GB free",
        "" if ok else "磁盘空间不足：请联系技术人员清理已同步的数据。",
        "" if ok else "Low disk space: ask a technician to clear synced data (kiosk-provision status).")]


def check_clock(now: float | None = None) -> list[CheckResult]:
    now = time.time() if now is None else now
    ok = EARLIEST_PLAUSIBLE <= now <= EARLIEST_PLAUSIBLE + 20 * 365 * 86400
    return [CheckResult(
        "clock", ok, time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now)),
        "" if ok else "系统时间不正确：请检查网络时间同步（NTP）。",
        "" if ok else "The system clock is wrong: check time synchronisation (NTP).")]


def run_selftest(settings, camera, mic, *, face_detector: FaceDetector | None = None,
                 display_size: tuple[int, int] | None = None, duration_s: float = 2.0,
                 now: float | None = None) -> list[CheckResult]:
    """Run every check; sources already running are observed, stopped ones started and
    stopped again. Never raises for a hardware problem: it becomes a failed check."""
    results: list[CheckResult] = []
    expected_fps = float(getattr(getattr(getattr(settings, "kiosk", None), "camera", None), "fps", 15) or 15)
    if camera is not None:
        # A file-backed camera runs at its file's rate, whatever the config asks for.
        expected_fps = float(getattr(camera, "native_fps", None) or expected_fps)
        results += check_camera(camera, expected_fps, duration_s, face_detector)
    if mic is not None:
        results += check_microphone(mic, duration_s)
    results += check_display(display_size)
    data_dir = getattr(getattr(settings, "paths", None), "data_dir", None) or Path(".")
    results += check_disk(Path(data_dir))
    results += check_clock(now)
    for r in results:
        log.info("selftest %s: %s (%s)", r.name, "ok" if r.ok else "FAIL", r.value)
    return results


__all__ = ["CheckResult", "run_selftest", "haar_face_detector", "FLOOR_DBFS"]
