"""camera_from_settings / microphone_from_settings: the one place that turns kiosk.camera
and kiosk.microphone into sources, for the kiosk and the self-test alike."""

from __future__ import annotations

import pytest

from device.config import settings_from_dict
from hardware.camera import CameraError, FileCamera, OpenCVCamera, camera_from_settings
from hardware.microphone import FileMic, SoundDeviceMic, microphone_from_settings


def _settings(tmp_path, camera: dict | None = None, microphone: dict | None = None):
    kiosk = {"camera": camera or {}, "microphone": microphone or {}}
    return settings_from_dict({"device": {"id": "kiosk-test"},
                               "paths": {"data_dir": str(tmp_path)},
                               "kiosk": kiosk}, path=tmp_path / "config.toml")


def test_a_video_file_source_plays_that_file(tmp_path, face_video):
    cam = camera_from_settings(_settings(tmp_path, {"source": str(face_video)}), pace="fast")
    assert isinstance(cam, FileCamera) and cam.path == face_video and cam.loop
    cam.start()
    try:
        frame = cam.read(timeout=3.0)
        assert frame is not None and frame.image.shape[:2] == (240, 320)
    finally:
        cam.stop()


def test_an_index_or_device_path_opens_a_real_camera_with_the_configured_size(tmp_path):
    cam = camera_from_settings(_settings(tmp_path, {"source": "2", "width": 640, "height": 480, "fps": 15}))
    assert isinstance(cam, OpenCVCamera) and cam.source == 2
    assert cam.size == (640, 480) and cam.fps == 15
    cam = camera_from_settings(_settings(tmp_path, {"source": "/dev/video3"}))
    assert isinstance(cam, OpenCVCamera) and cam.source == "/dev/video3"
    cam = camera_from_settings(_settings(tmp_path))
    assert isinstance(cam, OpenCVCamera) and cam.source == 0


def test_a_missing_video_file_is_named(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(CameraError, match="nope.mp4"):
        camera_from_settings(_settings(tmp_path, {"source": str(missing)}))


def test_a_wav_device_plays_that_file_and_a_sound_device_keeps_its_rate(tmp_path, speech_wav):
    mic = microphone_from_settings(_settings(tmp_path, microphone={"device": str(speech_wav)}),
                                   pace="fast")
    assert isinstance(mic, FileMic) and not mic.loop
    mic.start()
    try:
        chunk = mic.read(timeout=3.0)
        assert chunk is not None and len(chunk.pcm) > 0
    finally:
        mic.stop()
    looping = microphone_from_settings(_settings(tmp_path, microphone={"device": str(speech_wav)}), loop=True)
    assert looping.loop
    mic = microphone_from_settings(_settings(tmp_path, microphone={"device": "3", "samplerate": 48000}))
    assert isinstance(mic, SoundDeviceMic) and mic.device == 3 and mic.samplerate == 48000
    mic = microphone_from_settings(_settings(tmp_path, microphone={"device": "USB Audio"}))
    assert mic.device == "USB Audio"
    assert microphone_from_settings(_settings(tmp_path)).device is None
