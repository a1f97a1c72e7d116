"""Camera sources: a real OpenCV camera and a file-backed one, behind one interface.

Frames are captured on a worker thread, timestamped with the monotonic clock and handed to
callbacks or `read()`. A source must never block its caller, and never hide a lost device:
it flips `alive` to False and reports through `on_error` within a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from hardware.source import CaptureSource

# A camera that delivers nothing for this long is treated as unplugged.
STALL_TIMEOUT_S = 0.8
# Opening a V4L2 device and getting the first frame can take a few seconds.
STARTUP_GRACE_S = 4.0


@dataclass(frozen=True)
class Frame:
    """One camera picture: BGR uint8 HxWx3, monotonic timestamp, running index."""

    image: np.ndarray
    ts: float
    index: int


class CameraError(RuntimeError):
    """The camera could not be opened or stopped delivering."""


class CameraSource(Protocol):
    fps: float
    size: tuple[int, int]

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def read(self, timeout: float = 1.0) -> Frame | None: ...
    def on_frame(self, cb: Callable[[Frame], None]) -> None: ...
    def on_error(self, cb: Callable[[str], None]) -> None: ...
    @property
    def alive(self) -> bool: ...


class _Camera(CaptureSource[Frame]):
    """Frame delivery, `read()` and `latest()` shared by the real and the file camera."""

    name = "camera"
    item_kind = "frame"
    stall_timeout_s = STALL_TIMEOUT_S
    startup_grace_s = STARTUP_GRACE_S

    def __init__(self, fps: float, size: tuple[int, int]) -> None:
        super().__init__()
        self.fps = float(fps)
        self.size = size
        self._latest: Frame | None = None
        self._cond = threading.Condition()
        self._index = 0
        self.frames_delivered = 0

    # -- public interface -------------------------------------------------------------
    def on_frame(self, cb: Callable[[Frame], None]) -> None:
        self._data_cbs.append(cb)

    def read(self, timeout: float = 1.0) -> Frame | None:
        """The newest frame not older than the last call, or None after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            last = self._latest.index if self._latest is not None else -1
            while self.alive and (self._latest is None or self._latest.index == last):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._latest

    def latest(self) -> Frame | None:
        return self._latest

    # -- for subclasses ---------------------------------------------------------------
    def _grab(self) -> np.ndarray | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _pace(self) -> None:
        pass

    # -- machinery --------------------------------------------------------------------
    def _startup_detail(self, waited: float) -> str:
        return "camera opened but delivered no frame"

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _deliver(self, image: np.ndarray) -> None:
        frame = Frame(image=image, ts=time.monotonic(), index=self._index)
        self._index += 1
        self._delivered_at = frame.ts
        self.frames_delivered += 1
        with self._cond:
            self._latest = frame
            self._cond.notify_all()
        self._publish(frame)

    def _run(self) -> None:
        while not self._stop.is_set() and self._failed is None:
            try:
                image = self._grab()
            except Exception as exc:  # driver errors surface as a lost camera
                self._fail(f"capture error: {exc}")
                return
            if self._stop.is_set():
                return
            if image is None:
                self._fail("camera stopped delivering frames (unplugged or stream ended)")
                return
            self._deliver(image)
            self._pace()


class OpenCVCamera(_Camera):
    """A V4L2/USB camera by index (0) or device path (/dev/video0) through OpenCV."""

    def __init__(self, index_or_path: int | str, width: int = 1280, height: int = 720, fps: float = 30) -> None:
        super().__init__(fps, (width, height))
        self.source = index_or_path
        self._cap = None

    def _open(self) -> None:
        import cv2

        src = self.source
        if isinstance(src, str) and src.isdigit():
            src = int(src)
        cap = cv2.VideoCapture(src, cv2.CAP_V4L2) if not isinstance(src, str) else cv2.VideoCapture(src)
        if not cap.isOpened():
            raise CameraError(f"camera {self.source!r} could not be opened (check the cable and kiosk.camera in config.toml)")
        w, h = self.size
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, w)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, h)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a stale queue
        real_w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) or w
        real_h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or h
        self.size = (real_w, real_h)
        self._cap = cap

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _grab(self) -> np.ndarray | None:
        ok, image = self._cap.read()
        return image if ok else None


class FileCamera(_Camera):
    """Plays a video file through the camera interface, at real pace or as fast as read.

    At the end of the file it loops (`loop=True`) or behaves like an unplugged camera.
    """

    name = "file-camera"

    def __init__(self, path: str | Path, pace: str = "real", loop: bool = False) -> None:
        if pace not in ("real", "fast"):
            raise ValueError(f"FileCamera pace must be 'real' or 'fast', got {pace!r}")
        self.path = Path(path)
        if not self.path.exists():
            raise CameraError(f"video file {self.path} does not exist")
        import cv2

        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise CameraError(f"video file {self.path} could not be opened")
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        cap.release()
        super().__init__(fps, size)
        self.native_fps = fps
        self.pace = pace
        self.loop = loop
        self._cap = None
        self._next_due = 0.0

    def _open(self) -> None:
        import cv2

        self._cap = cv2.VideoCapture(str(self.path))
        self._next_due = time.monotonic()

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _grab(self) -> np.ndarray | None:
        import cv2

        ok, image = self._cap.read()
        if not ok and self.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
        return image if ok else None

    def _pace(self) -> None:
        if self.pace == "fast":
            # Yield a little so consumers on other threads keep up with a "fast" file.
            time.sleep(0.001)
            return
        self._next_due += 1.0 / self.fps
        delay = self._next_due - time.monotonic()
        if delay > 0:
            self._stop.wait(delay)
        elif delay < -1.0:
            self._next_due = time.monotonic()  # fell behind (loaded CPU): don't burst


def is_video_file(source: int | str) -> bool:
    """kiosk.camera.source names a video file (not an index like 0 / "0", not a /dev node)."""
    return isinstance(source, str) and bool(source) and not source.isdigit() and not source.startswith("/dev/")


def camera_from_settings(settings, *, pace: str = "real", loop: bool = True) -> CameraSource:
    """The configured camera, opened the same way by the kiosk and by the self-test.

    kiosk.camera.source: an index (0 or "0" = /dev/video0) or a device path -> OpenCVCamera
    at the configured width/height/fps; any other path -> FileCamera playing that video
    (looping by default, so a demo or bench terminal never "unplugs" at the end of the file).
    """
    cam = settings.kiosk.camera
    src = cam.source
    if is_video_file(src):
        return FileCamera(src, pace=pace, loop=loop)
    if isinstance(src, str) and src.isdigit():
        src = int(src)
    return OpenCVCamera(src, cam.width, cam.height, cam.fps)
