"""The synthetic media the tests, benchmarks and demo rely on: espeak-ng speech as 16 kHz
mono int16, and face videos that OpenCV reads back with the scripted segments."""

from __future__ import annotations

import wave

import cv2
import pytest

from hardware.synthetic import face_video, read_wav, segment_at, speak


@pytest.mark.parametrize(
    "lang, text", [("en", "hello team"), ("zh", "你好，我叫小明"), ("ko", "안녕하세요")]
)
def test_speech_is_16k_mono_int16_with_a_noise_floor(tmp_path, lang, text):
    p = speak(text, lang, tmp_path / f"{lang}.wav")
    with wave.open(str(p)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
    pcm = read_wav(p)
    assert len(pcm) > 16000 * 0.8
    lead = pcm[: int(16000 * 0.4)]
    assert 10 < lead.std() < 100, "the lead-in is quiet room noise, not digital silence"
    assert pcm.std() > 5 * lead.std()
    assert (read_wav(speak(text, lang, tmp_path / "again.wav")) == pcm).all(), (
        "same text, same file"
    )


def test_unknown_language_and_segment_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unsupported language"):
        speak("hi", "fr", tmp_path / "x.wav")
    with pytest.raises(ValueError, match="unknown segment"):
        face_video(tmp_path / "x.mp4", 1.0, script=[("sideways", 1.0)])


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_face_video_plays_back_with_its_script(tmp_path, suffix):
    script = [("present", 0.5), ("absent", 0.5)]
    p = face_video(tmp_path / f"v{suffix}", 1.5, fps=10, script=script)
    cap = cv2.VideoCapture(str(p))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    assert len(frames) == 15 and frames[0].shape == (480, 640, 3)
    # the last segment is held to fill the requested length
    assert segment_at(script, 1.2) == "absent"
    assert abs(float(frames[0].mean()) - float(frames[-1].mean())) > 1.0
