import threading
import time

import pytest

from hardware.camera import CameraError, FileCamera, OpenCVCamera


def test_file_camera_delivers_timestamped_frames_at_real_pace(face_video):
    cam = FileCamera(face_video, pace="real", loop=True)
    got = []
    cam.on_frame(got.append)
    cam.start()
    try:
        time.sleep(1.0)
    finally:
        cam.stop()
    assert cam.size == (320, 240)
    assert 8 <= len(got) <= 25  # 15 fps for ~1 s, with slack for a loaded machine
    assert all(b.ts > a.ts for a, b in zip(got, got[1:], strict=False))
    assert [f.index for f in got] == list(range(len(got)))
    assert got[0].image.shape == (240, 320, 3)
    assert threading.current_thread().name == "MainThread"


def test_file_camera_fast_pace_reads_whole_file_quickly(face_video):
    cam = FileCamera(face_video, pace="fast")
    errors = []
    cam.on_error(errors.append)
    cam.start()
    deadline = time.monotonic() + 10
    while cam.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    cam.stop()
    assert cam.frames_delivered == 45
    assert errors and "stream ended" in errors[0]


def test_camera_that_stops_is_reported_dead_within_a_second(face_video):
    """A file that ends without loop behaves like an unplugged camera."""
    cam = FileCamera(face_video, pace="real", loop=False)
    lost_at = []
    cam.on_error(lambda detail: lost_at.append(time.monotonic()))
    cam.start()
    last = None
    while cam.alive:
        f = cam.read(timeout=2.0)
        last = f or last
    assert lost_at, "the error callback must fire"
    assert not cam.alive
    assert lost_at[0] - last.ts < 1.0
    cam.stop()


def test_stalled_driver_is_detected_by_the_watchdog(face_video):
    """A driver read that blocks forever (a yanked USB camera) still flips alive within 1 s."""
    cam = FileCamera(face_video, pace="real", loop=True)
    block = threading.Event()
    original = cam._grab

    def grab():
        if cam.frames_delivered >= 5:
            block.wait(5)
        return original()

    cam._grab = grab
    errors = []
    cam.on_error(errors.append)
    cam.start()
    deadline = time.monotonic() + 5
    while cam.alive and time.monotonic() < deadline:
        time.sleep(0.02)
    stalled_for = time.monotonic() - cam.latest().ts
    block.set()
    cam.stop()
    assert errors and "no frame" in errors[0]
    assert stalled_for < 1.5  # detection (<1 s) plus this loop's polling on a loaded machine


def test_read_returns_none_when_nothing_new(face_video):
    cam = FileCamera(face_video, pace="real", loop=True)
    assert cam.read(timeout=0.05) is None  # not started
    cam.start()
    try:
        a = cam.read(timeout=1.0)
        b = cam.read(timeout=1.0)
        assert a is not None and b is not None and b.index > a.index
    finally:
        cam.stop()


def test_missing_files_and_devices_give_clear_errors(tmp_path):
    with pytest.raises(CameraError, match="does not exist"):
        FileCamera(tmp_path / "nope.avi")
    with pytest.raises(ValueError, match="pace"):
        FileCamera(tmp_path / "nope.avi", pace="slow")
    with pytest.raises(CameraError, match="could not be opened"):
        OpenCVCamera(str(tmp_path / "video99")).start()
