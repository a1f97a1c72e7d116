"""Real media files for the hardware tests: a short face video and spoken WAVs."""

from __future__ import annotations

import subprocess
import wave

import cv2
import numpy as np
import pytest


def write_face_video(path, seconds: float, fps: int = 15, face: bool = True):
    from skimage import data

    face_img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    face_img = cv2.resize(face_img, (400, 400))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (320, 240))
    for i in range(int(seconds * fps)):
        canvas = np.full((240, 320, 3), 90, np.uint8)
        if face:
            dx = int(4 * np.sin(i / 5))
            canvas[:, :] = face_img[0:240, 40 + dx:360 + dx]
        writer.write(canvas)
    writer.release()
    return path


@pytest.fixture(scope="session")
def face_video(tmp_path_factory):
    return write_face_video(tmp_path_factory.mktemp("hw") / "face.avi", 3.0)


@pytest.fixture(scope="session")
def empty_video(tmp_path_factory):
    return write_face_video(tmp_path_factory.mktemp("hw") / "empty.avi", 1.0, face=False)


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory):
    d = tmp_path_factory.mktemp("hw")
    raw, out = d / "raw.wav", d / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en", "-w", str(raw), "I have five years of experience with Python."], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def loud_wav(tmp_path_factory):
    """A full-scale square wave: must be reported as clipping."""
    path = tmp_path_factory.mktemp("hw") / "loud.wav"
    t = np.arange(16000)
    pcm = np.where((t // 20) % 2, 32767, -32768).astype(np.int16)
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(16000)
        wf.writeframes(pcm.tobytes())
    return path
