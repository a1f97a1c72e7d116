"""`kiosk-provision rotate-keys --master` on a terminal with undelivered answer recordings:
every recording is re-sealed under the new master key's media key (a power cut at any step
included), stays byte-identical when decrypted, and still opens for HR."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from skimage import data as skdata

from device.config import load_settings
from device.keys import derive_key, load_master_key
from device.mediacrypt import (
    LEGACY_MAGIC,
    TS,
    MediaError,
    chunk_aad,
    generate_clip_key,
    load_clip_private_key,
    load_clip_public_key,
    open_bytes,
    seal_for_hr,
)
from device.records import topic
from hardware.synthetic import speak
from kiosk.media import EncryptedMediaWriter, read_media
from tests.provisioning.conftest import Device, Runner, as_json
from tests.provisioning.test_cli import OK, open_store

SESSION = "s-rot-1"


class PowerCut(BaseException):
    """Raised at an injected crash point; a BaseException so no `except Exception` in the
    code under test can swallow it, as nothing swallows a power cut."""


@dataclass
class Recording:
    path: Path
    media_id: str | None
    plain: list[tuple[float, bytes]] = field(repr=False)   # what was recorded, decrypted right after recording


def _decrypt(path: Path, media_key: bytes) -> list[tuple[float, bytes]]:
    _, chunks = read_media(path, media_key)
    return list(chunks)


def _record_answer(media_dir: Path, media_key: bytes, wav: Path) -> list[dict]:
    """An answer recorded the way kiosk/capture.py does it: a video and an audio writer."""
    answer_id = str(uuid.uuid4())
    folder = media_dir / SESSION
    video = EncryptedMediaWriter(folder / f"{answer_id}.video.ikm", media_key, "video",
                                 {"codec": "jpeg", "fps": 15})
    audio = EncryptedMediaWriter(folder / f"{answer_id}.audio.ikm", media_key, "audio",
                                 {"codec": "pcm_s16le", "samplerate": 16000, "channels": 1})
    face = skdata.astronaut()[:, :, ::-1]   # BGR, 512x512
    for i in range(40):   # ~2.6 s at 15 fps, a few MB: several copy blocks per file
        frame = np.roll(face, i * 3, axis=1).copy()
        video.add(frame, i / 15)
    with wave.open(str(wav), "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    for i, start in enumerate(range(0, len(pcm), 1600)):
        audio.add(pcm[start:start + 1600], i * 0.1)
    return [{**m.as_dict(), "answer_id": answer_id} for m in (video.close(), audio.close())]


def _legacy_recording(path: Path, media_key: bytes, pcm: np.ndarray) -> None:
    """An IKMEDIA1 file as the kiosk wrote them before per-file content keys (commit
    541679b^ kiosk/media.py): chunks sealed directly under the media key."""
    file_id = uuid.uuid4()
    header = json.dumps({"kind": "audio", "id": str(file_id), "codec": "pcm_s16le",
                         "samplerate": 16000, "channels": 1}).encode()
    aes = AESGCM(media_key)
    parts = [pcm[i:i + 1600] for i in range(0, len(pcm), 1600)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as f:
        f.write(LEGACY_MAGIC + struct.pack(">I", len(header)) + header)
        for i, part in enumerate(parts):
            nonce = os.urandom(12)
            ct = aes.encrypt(nonce, TS.pack(i * 0.1) + part.tobytes(),
                             chunk_aad(file_id.bytes, i, i == len(parts) - 1))
            f.write(struct.pack(">I", len(ct)) + nonce + ct)
    path.chmod(0o600)


@pytest.fixture
def recorded(kp: Runner, device: Device, tmp_path: Path) -> tuple[Device, list[Recording], Path]:
    """A terminal with undelivered recordings: one answer (video sealed for HR, audio not
    yet), a legacy IKMEDIA1 audio file, and a file of an answer cut short by a crash (no
    `media` row); a sealed secret; clip rows queued like the session machine queues them."""
    assert kp("wecom", "set-secret", input="app-secret-42\n").returncode == OK
    settings = load_settings(device.config)
    media_dir = Path(settings.paths.media_dir)
    media_key = derive_key(load_master_key(device.key_dir), "media")
    wav = speak("Thank you, I led the night shift for two years.", "en", tmp_path / "answer.wav")
    media = _record_answer(media_dir, media_key, wav)
    hr_priv, hr_pub = tmp_path / "hr-clip.key", tmp_path / "hr-clip.pub"
    generate_clip_key(hr_priv, hr_pub)
    video = next(m for m in media if m["kind"] == "video")
    assert seal_for_hr(Path(video["path"]), media_key, load_clip_public_key(hr_pub.read_text()))
    with wave.open(str(wav), "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    legacy = media_dir / SESSION / f"{uuid.uuid4()}.audio.ikm"
    _legacy_recording(legacy, media_key, pcm)
    orphans = _record_answer(media_dir, media_key, wav)   # their rows were never written
    with open_store(device) as store, store.transaction():
        store.db["sessions"].insert({"id": SESSION, "job_id": "sales_rep", "candidate_ref": "e1",
                                     "state": "done", "language": "en", "started": 1.0, "data": "{}"})
        for m in media:
            store.db["media"].insert({"id": m["id"], "session_id": SESSION, "answer_id": m["answer_id"],
                                      "kind": m["kind"], "path": m["path"], "size": m["size"],
                                      "sha256": m["sha256"]})
            store.enqueue("clip", topic(settings, "clip"),
                          {"media_id": m["id"], "session_id": SESSION, "answer_id": m["answer_id"],
                           "question_id": "q1", "kind": m["kind"], "path": m["path"],
                           "size": m["size"], "sha256": m["sha256"]},
                          session_id=SESSION, id=m["id"])
        store.db["media"].insert({"id": "legacy-1", "session_id": SESSION, "answer_id": None,
                                  "kind": "audio", "path": str(legacy.relative_to(device.data_dir)),
                                  "size": legacy.stat().st_size, "sha256": None})
    recs = [Recording(Path(m["path"]), m["id"], _decrypt(Path(m["path"]), media_key)) for m in media]
    recs.append(Recording(legacy, "legacy-1", _decrypt(legacy, media_key)))
    recs += [Recording(Path(o["path"]), None, _decrypt(Path(o["path"]), media_key)) for o in orphans]
    # What was recorded really is in there: the speech, sample for sample.
    for r in (recs[1], recs[2]):
        assert np.array_equal(np.frombuffer(b"".join(c for _, c in r.plain), np.int16), pcm)
    return device, recs, hr_priv


def _assert_all_readable(device: Device, recs: list[Recording]) -> None:
    """Every recording opens with the current master key's media key, identical to what was
    recorded, and the `media` rows describe the files as they are now."""
    key = derive_key(load_master_key(device.key_dir), "media")
    for r in recs:
        assert _decrypt(r.path, key) == r.plain, r.path.name
        assert not r.path.with_name(r.path.name + ".tmp").exists()
    with open_store(device) as store:
        rows = {i: (s, h) for i, s, h in store.db.execute("SELECT id, size, sha256 FROM media")}
    for r in recs:
        if r.media_id is not None:
            assert rows[r.media_id] == (r.path.stat().st_size,
                                        hashlib.sha256(r.path.read_bytes()).hexdigest())


def test_rotation_reseals_every_recording(kp: Runner, recorded) -> None:
    device, recs, hr_priv = recorded
    old = load_master_key(device.key_dir)
    out = as_json(kp("rotate-keys", "--master", "--json"))
    assert out["recordings_resealed"] == len(recs) and out["recordings_unreadable"] == 0
    new = load_master_key(device.key_dir)
    assert new != old
    _assert_all_readable(device, recs)
    old_media = derive_key(old, "media")
    for r in recs:   # the old key opens none of them any more, the legacy file included
        with pytest.raises(MediaError):
            _decrypt(r.path, old_media)
        assert r.path.read_bytes()[:8] == b"IKMEDIA2"
    # HR's wrap (X25519, not derived from the master key) is untouched: HR still opens the
    # clip sealed before the rotation, byte for byte.
    video = recs[0]
    _, chunks = open_bytes(video.path.read_bytes(), hr_key=load_clip_private_key(hr_priv))
    assert list(chunks) == video.plain
    # The sync daemon seals the not-yet-sealed audio for HR with the new media key.
    pub = load_clip_private_key(hr_priv).public_key()
    assert seal_for_hr(recs[1].path, derive_key(new, "media"), pub)
    _, chunks = open_bytes(recs[1].path.read_bytes(), hr_key=load_clip_private_key(hr_priv))
    assert list(chunks) == recs[1].plain
    with open_store(device) as store:   # the clips are still waiting for upload
        pending = store.db.execute("SELECT count(*) FROM outbox WHERE kind = 'clip' AND delivered IS NULL")
        assert pending.fetchone()[0] == 2
    entry = as_json(kp("audit", "show", "--json", "--last", "1"))[-1]
    assert entry["action"] == "keys.rotate"
    assert entry["detail"]["recordings_resealed"] == len(recs)
    assert kp("audit", "verify").returncode == OK


def test_power_cut_at_any_step_then_resume_leaves_every_recording_readable(
        kp: Runner, recorded, monkeypatch: pytest.MonkeyPatch) -> None:
    """Crash at the k-th durable step (every fsync and rename: the pending key, the sealed
    secret, each recording's new file, its rename, the key swap), k = 1, 2, ... until a
    rotation gets through; after each crash the next run resumes, and every recording opens
    with the key that is current then. Each round starts from the previous round's key."""
    device, recs, _ = recorded
    real_fsync, real_replace = os.fsync, os.replace
    k = 0
    while True:
        k += 1
        before = load_master_key(device.key_dir)
        calls = 0

        def step(at: int = k) -> None:
            nonlocal calls
            calls += 1
            if calls == at:
                raise PowerCut(f"power cut at step {at}")

        def fsync(fd: int) -> None:
            step()
            real_fsync(fd)

        def replace(src, dst) -> None:
            step()
            real_replace(src, dst)

        with monkeypatch.context() as m:
            m.setattr(os, "fsync", fsync)
            m.setattr(os, "replace", replace)
            try:
                proc = kp("rotate-keys", "--master", "--json")
            except PowerCut:
                proc = None
        if proc is not None:   # k is past the last step: this run was not interrupted
            assert proc.returncode == OK, proc.stderr
            break
        # Between the crash and the resume each recording opens with the old key or the
        # pending new one, never neither (the rename is all or nothing).
        pending = device.key_dir / "master.key.new"
        keys = [derive_key(before, "media")]
        if pending.exists():
            keys.append(derive_key(pending.read_bytes(), "media"))
        keys.append(derive_key(load_master_key(device.key_dir), "media"))
        for r in recs:
            assert any(_opens(r.path, key) for key in keys), (k, r.path.name)
        # A power cut mid-write leaves a half-written tmp: the resume must not trust it.
        junk = recs[0].path.with_name(recs[0].path.name + ".tmp")
        junk.write_bytes(b"IKMEDIA2 half written")
        out = as_json(kp("rotate-keys", "--master", "--json"))
        assert out["recordings_resealed"] == len(recs) and out["recordings_unreadable"] == 0
        assert load_master_key(device.key_dir) != before
        _assert_all_readable(device, recs)
    assert k > 3 * len(recs)   # the crash points really covered every recording
    _assert_all_readable(device, recs)
    assert kp("audit", "verify").returncode == OK


def _opens(path: Path, key: bytes) -> bool:
    try:
        _decrypt(path, key)
        return True
    except MediaError:
        return False


def test_a_recording_neither_key_opens_is_left_alone_and_reported(kp: Runner, recorded, tmp_path: Path) -> None:
    device, recs, _ = recorded
    settings = load_settings(device.config)
    # A recording left from before a `wipe --keep-data`: sealed under a key that no longer exists.
    stranger = Path(settings.paths.media_dir) / "s-old" / f"{uuid.uuid4()}.audio.ikm"
    w = EncryptedMediaWriter(stranger, os.urandom(32), "audio", {"codec": "pcm_s16le"})
    w.add(np.zeros(1600, np.int16), 0.0)
    w.close()
    before = stranger.read_bytes()
    proc = kp("rotate-keys", "--master")
    assert proc.returncode == OK, proc.stderr
    assert "1 recording(s) open with neither" in proc.stderr
    assert "Re-sealing recordings" in proc.stderr   # the progress bar
    assert stranger.read_bytes() == before
    _assert_all_readable(device, recs)
