import time

import numpy as np
import pytest

from hardware.microphone import FLOOR_DBFS, FileMic, MicrophoneError, is_clipping, level_dbfs


def test_level_meter_in_dbfs():
    full = np.full(1600, 32767, np.int16)
    assert level_dbfs(full) == pytest.approx(0.0, abs=0.01)
    half = np.full(1600, 16384, np.int16)
    assert level_dbfs(half) == pytest.approx(-6.02, abs=0.05)
    assert level_dbfs(np.zeros(1600, np.int16)) == FLOOR_DBFS
    assert is_clipping(full) and not is_clipping(half)


def test_file_mic_plays_speech_in_100ms_chunks_at_real_pace(speech_wav):
    mic = FileMic(speech_wav, pace="real")
    chunks = []
    mic.on_chunk(chunks.append)
    mic.start()
    try:
        time.sleep(1.0)
        level = mic.level_dbfs
    finally:
        mic.stop()
    assert 6 <= len(chunks) <= 14
    assert all(c.pcm.dtype == np.int16 and len(c.pcm) == 1600 and c.samplerate == 16000 for c in chunks)
    assert max(level_dbfs(c.pcm) for c in chunks) > -30  # speech is loud
    assert level > -60
    assert not mic.silent


def test_file_mic_after_the_file_gives_room_noise_and_silence_flag(speech_wav):
    mic = FileMic(None, pace="fast")
    mic.silence_s = 0.2
    mic.start()
    try:
        chunks = [mic.read(1.0) for _ in range(5)]
        time.sleep(0.4)
        assert mic.silent
        assert all(-80 < level_dbfs(c.pcm) < -60 for c in chunks)
        heard = []
        mic.on_chunk(heard.append)
        mic.play(speech_wav)
        assert mic.playing
        deadline = time.monotonic() + 3
        while mic.playing and time.monotonic() < deadline:
            time.sleep(0.05)
        assert max(level_dbfs(c.pcm) for c in heard) > -30
        assert mic.alive
    finally:
        mic.stop()


def test_clipping_is_flagged(loud_wav):
    mic = FileMic(loud_wav, pace="fast")
    mic.start()
    try:
        mic.read(1.0)
        assert mic.clipping
    finally:
        mic.stop()


def test_stalled_microphone_is_reported_dead(speech_wav):
    mic = FileMic(speech_wav, pace="real")
    errors = []
    mic.on_error(errors.append)
    mic.start()
    mic.read(1.0)
    mic._stop_delivering = True
    # Simulate a driver that stops calling back: stop the feeder thread only.
    mic._deliver = lambda *a, **k: None
    deadline = time.monotonic() + 3
    while mic.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    mic.stop()
    assert errors and "no audio" in errors[0]


def test_bad_wav_is_refused_with_the_reason(tmp_path):
    import wave

    p = tmp_path / "44k.wav"
    with wave.open(str(p), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(44100)
        wf.writeframes(b"\0\0" * 100)
    with pytest.raises(MicrophoneError, match="expected 16000 Hz"):
        FileMic(p)
