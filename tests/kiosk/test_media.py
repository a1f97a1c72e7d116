import os

import numpy as np
import pytest

from kiosk.media import EncryptedMediaWriter, MediaError, decrypt_audio, read_media


def _frames(n):
    rng = np.random.default_rng(1)
    return [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(n)]


def test_video_and_audio_round_trip_and_are_unreadable_without_the_key(tmp_path):
    key = os.urandom(32)
    v = EncryptedMediaWriter(tmp_path / "a.video.ikm", key, "video", {"fps": 15})
    for i, f in enumerate(_frames(10)):
        v.add(f, 100.0 + i / 15)
    info = v.close()
    assert info.kind == "video" and info.chunks == 10 and info.duration_s == pytest.approx(9 / 15)
    header, chunks = read_media(info.path, key)
    got = list(chunks)
    assert header["fps"] == 15 and len(got) == 10 and got[0][1][:2] == b"\xff\xd8"  # JPEG
    assert b"\xff\xd8\xff" not in open(info.path, "rb").read()  # no JPEG on disk
    a = EncryptedMediaWriter(tmp_path / "a.audio.ikm", key, "audio")
    pcm = (np.sin(np.arange(16000) / 8) * 8000).astype(np.int16)
    for i in range(10):
        a.add(pcm[i * 1600:(i + 1) * 1600], i * 0.1)
    a.close()
    assert np.array_equal(decrypt_audio(tmp_path / "a.audio.ikm", key), pcm)
    with pytest.raises(MediaError, match="does not (authenticate|unwrap)"):
        list(read_media(info.path, os.urandom(32))[1])
    assert oct(os.stat(info.path).st_mode & 0o777) == "0o600"


def test_truncated_and_tampered_recordings_are_refused(tmp_path):
    key = os.urandom(32)
    w = EncryptedMediaWriter(tmp_path / "x.ikm", key, "audio")
    for i in range(5):
        w.add(np.full(1600, i, np.int16), i * 0.1)
    info = w.close()
    data = open(info.path, "rb").read()
    # Cut off the final chunk (power loss mid-write): must not pass as complete.
    cut = tmp_path / "cut.ikm"
    header_and_four = data[: len(data) - (4 + 12 + 16 + 8 + 3200)]
    cut.write_bytes(header_and_four)
    with pytest.raises(MediaError):
        list(read_media(cut, key)[1])
    flipped = bytearray(data)
    flipped[-5] ^= 0x01
    bad = tmp_path / "bad.ikm"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(MediaError):
        list(read_media(bad, key)[1])


def test_abort_deletes_the_partial_recording(tmp_path):
    w = EncryptedMediaWriter(tmp_path / "p.ikm", os.urandom(32), "audio")
    w.add(np.zeros(1600, np.int16), 0.0)
    w.abort()
    assert not (tmp_path / "p.ikm").exists()
