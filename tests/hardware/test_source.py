"""The plumbing every capture source shares (hardware.source.CaptureSource), exercised
through both real file-backed sources: a camera playing a video and a mic playing a WAV."""

import threading
import time

import pytest

from hardware.camera import FileCamera
from hardware.microphone import FileMic


@pytest.fixture(params=["camera", "mic"])
def source(request, face_video, speech_wav):
    src = (FileCamera(face_video, pace="real", loop=True) if request.param == "camera"
           else FileMic(speech_wav, pace="real", loop=True))
    yield src
    src.stop()


def _subscribe(src, cb):
    (src.on_frame if isinstance(src, FileCamera) else src.on_chunk)(cb)


def _stall(src):
    """Make the source go quiet the way a yanked device does: the camera's driver read
    blocks, the mic's driver stops calling back. Returns the event that unblocks the camera."""
    release = threading.Event()
    if isinstance(src, FileCamera):
        original = src._grab

        def grab():
            release.wait(10)
            return None if release.is_set() else original()

        src._grab = grab
    else:
        src._deliver = lambda *a, **k: None
    return release


def _wait(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()


def test_a_raising_callback_neither_stops_delivery_nor_logs_what_it_was_given(source, caplog):
    def bad(item):
        raise ValueError("candidate said 我叫张三")

    got = []
    _subscribe(source, bad)
    _subscribe(source, got.append)
    source.start()
    assert _wait(lambda: len(got) >= 5)
    assert source.alive
    failures = [r for r in caplog.records if "callback failed" in r.getMessage()]
    assert failures and "ValueError" in failures[0].getMessage()
    assert "张三" not in caplog.text and "candidate said" not in caplog.text


def test_the_watchdog_reports_a_stalled_source_once(source):
    errors = []
    source.on_error(errors.append)
    source.start()
    assert source.read(2.0) is not None
    release = _stall(source)
    assert _wait(lambda: not source.alive)
    # The camera's blocked read now returns "unplugged" too: still a single report.
    release.set()
    time.sleep(0.5)
    assert len(errors) == 1 and errors[0].startswith(("no frame for", "no audio for"))
    assert source.error == errors[0]


def test_a_source_that_never_delivers_is_lost_after_its_startup_grace(source):
    errors = []
    source.on_error(errors.append)
    source.startup_grace_s = 0.3
    release = _stall(source)
    source.start()
    assert _wait(lambda: bool(errors))
    release.set()
    expected = "camera opened but delivered no frame" if isinstance(source, FileCamera) else "no audio for"
    assert errors[0].startswith(expected) and not source.alive


def test_a_lost_source_reopens_on_start_and_reports_the_next_loss_again(source):
    errors = []
    source.on_error(errors.append)
    source.start()
    _stall(source).set()  # the camera's next read says unplugged; the mic goes quiet
    assert _wait(lambda: not source.alive)
    del source.__dict__["_grab" if isinstance(source, FileCamera) else "_deliver"]  # replugged
    source.start()
    assert source.alive and source.error is None
    assert source.read(2.0) is not None
    _stall(source).set()
    assert _wait(lambda: len(errors) == 2)


def test_stop_joins_the_threads_and_can_be_called_again(source):
    source.stop()  # before start: nothing to do
    source.start()
    threads = [source._thread, source._watchdog]
    assert all(t is not None and t.is_alive() for t in threads)
    source.stop()
    assert not any(t.is_alive() for t in threads)
    assert not source.alive
    source.stop()
    assert not source.alive and source._thread is None and source._watchdog is None


def test_stop_from_an_error_callback_does_not_deadlock(source):
    stopped = threading.Event()
    source.on_error(lambda detail: (source.stop(), stopped.set()))
    source.start()
    source.read(2.0)
    _stall(source).set()  # the camera's worker reports the loss itself, the mic's watchdog
    assert stopped.wait(5)
    assert not source.alive
