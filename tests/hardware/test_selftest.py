from types import SimpleNamespace

from hardware.camera import FileCamera
from hardware.microphone import FileMic
from hardware.selftest import check_clock, check_display, run_selftest


def _settings(tmp_path, fps=15):
    return SimpleNamespace(kiosk=SimpleNamespace(camera=SimpleNamespace(fps=fps)),
                           paths=SimpleNamespace(data_dir=tmp_path))


def _by_name(results):
    return {r.name: r for r in results}


def test_selftest_passes_with_a_face_and_a_quiet_room(tmp_path, face_video):
    cam = FileCamera(face_video, pace="real", loop=True)
    mic = FileMic(None, pace="real")
    res = _by_name(run_selftest(_settings(tmp_path), cam, mic, display_size=(1920, 1080), duration_s=1.0))
    assert res["camera_rate"].ok, res["camera_rate"].value
    assert res["camera_face"].ok, res["camera_face"].value
    assert res["mic_noise_floor"].ok
    assert res["display"].ok and res["disk_free"].ok and res["clock"].ok
    assert not cam.alive and not mic.alive  # the test started them, so it stopped them


def test_selftest_fails_without_a_face_and_says_why_in_both_languages(tmp_path, empty_video):
    cam = FileCamera(empty_video, pace="fast", loop=True)
    res = _by_name(run_selftest(_settings(tmp_path), cam, None, duration_s=0.5))
    face = res["camera_face"]
    assert not face.ok
    assert "人脸" in face.hint_zh and "face" in face.hint_en


def test_selftest_uses_a_supplied_face_detector(tmp_path, face_video):
    seen = []
    cam = FileCamera(face_video, pace="fast", loop=True)
    res = _by_name(run_selftest(_settings(tmp_path), cam, None, duration_s=0.3,
                                face_detector=lambda img: seen.append(img.shape) or 0))
    assert seen and not res["camera_face"].ok


def test_slow_camera_fails_the_rate_check(tmp_path, face_video):
    import time

    cam = FileCamera(face_video, pace="real", loop=True)
    cam._pace = lambda: time.sleep(0.2)  # a starved USB camera: 5 fps instead of 15
    res = _by_name(run_selftest(_settings(tmp_path), cam, None, duration_s=1.0))
    assert not res["camera_rate"].ok and "frame rate" in res["camera_rate"].hint_en


def test_clipping_mic_and_dead_camera_fail(tmp_path, loud_wav):
    mic = FileMic(loud_wav, pace="fast", loop=True)
    res = _by_name(run_selftest(_settings(tmp_path), None, mic, duration_s=0.3))
    assert not res["mic_level"].ok and "clipping" in res["mic_level"].value


def test_display_and_clock_checks():
    assert not check_display((800, 480))[0].ok
    assert check_display((1080, 1920))[0].ok
    assert not check_clock(now=0.0)[0].ok
    assert check_clock(now=1790000000.0)[0].ok
