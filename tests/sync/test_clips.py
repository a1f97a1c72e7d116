"""Answer clips from the kiosk's recorder to HR's player: the session commits the answer and
queues its clips, the sync daemon seals them for HR's X25519 clip key and uploads them over
mutual TLS, the connector stores them, and `interview-hr clip export` gives back exactly what
was recorded. Only HR's key opens them at HR; nothing lies in plaintext on either disk."""

from __future__ import annotations

import hashlib
import json
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from device import session as S
from device.keys import derive_key, load_master_key
from device.mediacrypt import (
    MediaError,
    generate_clip_key,
    load_clip_private_key,
    open_bytes,
    seal_for_hr,
)
from device.session import SessionMachine, State
from device.store import Store
from kiosk.media import EncryptedMediaWriter, read_media
from sync.connector.__main__ import main as hr_main
from sync.connector.clips import decrypt_clip, stored_clip_bytes
from sync.connector.endpoint import ClipFile
from sync.connector.service import Connector
from sync.daemon import SyncDaemon
from sync.outbox import HTTPS_OFF_NOTE, NO_CLIP_KEY, deliver_clips_once, settle_unsendable_clips
from tests.device.test_session import Clock, make_bank, to_state
from tests.sync.conftest import DaemonThread, connector_config, wait_for

JPEG_SOI = b"\xff\xd8\xff"


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(n)]


def _pcm() -> np.ndarray:
    t = np.arange(16000 * 2)
    return (np.sin(t / 5.3) * 9000 + np.sin(t / 17.1) * 3000).astype(np.int16)


def _record(settings, session_id: str, *, hr_public_key=None) -> tuple[list[dict], list[bytes], np.ndarray]:
    """What kiosk/capture.py does for one answer: two encrypted recordings, media dicts."""
    key = derive_key(load_master_key(settings.paths.key_dir), "media")
    rec = "rec-0001"
    folder = Path(settings.paths.media_dir) / session_id
    v = EncryptedMediaWriter(folder / f"{rec}.video.ikm", key, "video",
                             {"codec": "jpeg", "fps": 15.0}, hr_public_key=hr_public_key)
    a = EncryptedMediaWriter(folder / f"{rec}.audio.ikm", key, "audio",
                             {"codec": "pcm_s16le", "samplerate": 16000, "channels": 1},
                             hr_public_key=hr_public_key)
    frames, pcm = _frames(12), _pcm()
    for i, f in enumerate(frames):
        v.add(f, 50.0 + i / 15)
    for i in range(20):
        a.add(pcm[i * 1600:(i + 1) * 1600], 50.0 + i * 0.1)
    infos = [v.close(), a.close()]
    jpegs = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes() for f in frames]
    return [dict(i.as_dict(), answer_id=rec) for i in infos], jpegs, pcm


def _insert_media(store: Store, session_id: str, media: list[dict]) -> None:
    # As kiosk/window.py's _record_media does, before AnswerFinished reaches the machine.
    with store.transaction():
        for m in media:
            store.db["media"].insert({"id": m["id"], "session_id": session_id, "answer_id": m["answer_id"],
                                      "kind": m["kind"], "path": m["path"], "size": m["size"],
                                      "sha256": m["sha256"]}, replace=True)


def _answer_with_media(store: Store, settings) -> tuple[str, list[dict], list[bytes], np.ndarray]:
    machine = SessionMachine(store, settings, clock=Clock(), bank=make_bank())
    sid = to_state(machine, machine.clock, State.ANSWER)
    media, jpegs, pcm = _record(settings, sid)
    _insert_media(store, sid, media)
    assert machine.handle(S.AnswerFinished("测试回答", {}, media, 1.3))
    return sid, media, jpegs, pcm


def _clip_rows(store: Store) -> list:
    with store.lock:
        ids = [r[0] for r in store.db.execute("SELECT id FROM outbox WHERE kind = 'clip' ORDER BY seq")]
    return [store.get_outbox(i) for i in ids]


def _no_plaintext(folder: Path, pcm: np.ndarray) -> None:
    probe = pcm[4000:4032].tobytes()
    files = [p for p in Path(folder).rglob("*") if p.is_file()]
    assert files
    for p in files:
        data = p.read_bytes()
        assert JPEG_SOI not in data, p
        assert probe not in data, p


@pytest.fixture
def clip_key(tmp_path) -> Path:
    path = tmp_path / "hr-keys" / "clips.key"
    generate_clip_key(path, path.with_suffix(".pub"))
    return path


@pytest.fixture
def hr_clip_settings(tmp_path, site_pki, broker_port, https_port, hr_key_path, clip_key):
    return connector_config(tmp_path, site_pki, broker_port, https_port, hr_key_path,
                            signing={"clip_key_file": str(clip_key)})


def test_answer_clip_goes_from_the_recorder_to_hr_playback(
        sync_settings, hr_clip_settings, hr_config_file, clip_key, tmp_path, capsys):
    settings = sync_settings(fallback_after_s=1)
    store = Store.open_from_settings(settings)
    sid, media, jpegs, pcm = _answer_with_media(store, settings)

    # Committed with the answer: one clip row per recording, waiting (no HR key yet).
    rows = _clip_rows(store)
    assert [r.payload["media_id"] for r in rows] == [m["id"] for m in media]
    answer_id = rows[0].payload["answer_id"]
    assert all(r.session_id == sid and r.payload["answer_id"] == answer_id for r in rows)
    assert rows[0].payload["sha256"] == media[0]["sha256"] and rows[0].payload["kind"] == "video"

    # The HR clip key arrives (what `kiosk-provision enrol` caches from the bundle).
    pub_pem = clip_key.with_suffix(".pub").read_text()
    store.cache_put("pubkey", "clips", 1, {"pem": pub_pem})
    conn = Connector(hr_clip_settings).start()
    try:
        with DaemonThread(settings):
            wait_for(lambda: all(r.delivered for r in _clip_rows(store)), 30, 0.1, "clips uploaded")
        for m in media:
            c = conn.db.clip(m["id"])
            assert c["completed"] and c["meta"]["answer_id"] == answer_id
            assert c["meta"]["session_id"] == sid
    finally:
        conn.stop()

    # Sealing for HR changed only the header; the media row follows the file.
    for m in media:
        with store.lock:
            size, sha = store.db.execute("SELECT size, sha256 FROM media WHERE id = ?", (m["id"],)).fetchone()
        data = Path(m["path"]).read_bytes()
        assert (size, sha) == (len(data), hashlib.sha256(data).hexdigest()) and sha != m["sha256"]

    # The result record names the clips of each answer, so the EHR can link them.
    machine = SessionMachine(store, settings, clock=Clock(), bank=make_bank())
    machine.recover()
    with store.lock:
        record = json.loads(store.db.execute("SELECT record FROM results WHERE session_id = ?",
                                             (sid,)).fetchone()[0])
    assert record["answers"][0]["clip_ids"] == [m["id"] for m in media]

    cfg = hr_config_file(hr_clip_settings)
    out = tmp_path / "hr-out"
    out.mkdir()
    assert hr_main(["--config", str(cfg), "clip", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {c["id"] for c in listed} == {m["id"] for m in media}
    video_id, audio_id = media[0]["id"], media[1]["id"]
    assert hr_main(["--config", str(cfg), "clip", "export", audio_id, "--out", str(out / "a.wav")]) == 0
    with wave.open(str(out / "a.wav")) as w:
        assert w.getframerate() == 16000
        assert w.readframes(w.getnframes()) == pcm.tobytes()
    assert hr_main(["--config", str(cfg), "clip", "export", video_id, "--out", str(out / "v.mjpeg")]) == 0
    assert (out / "v.mjpeg").read_bytes() == b"".join(jpegs)
    assert hr_main(["--config", str(cfg), "clip", "export", video_id, "--out", str(out / "v.mp4")]) == 0
    cap = cv2.VideoCapture(str(out / "v.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(jpegs)
    cap.release()

    # HR's key alone opens the clip; another X25519 key does not; the device still reads
    # its own file with its media key (HR never has that key).
    _, data = stored_clip_bytes(hr_clip_settings, audio_id)
    header, chunks = decrypt_clip(data, load_clip_private_key(clip_key))
    assert b"".join(c for _, c in chunks) == pcm.tobytes() and "keys" not in header
    with pytest.raises(MediaError, match="sealed for HR clip key"):
        open_bytes(data, hr_key=X25519PrivateKey.generate())
    device_key = derive_key(load_master_key(settings.paths.key_dir), "media")
    assert b"".join(c for _, c in read_media(media[1]["path"], device_key)[1]) == pcm.tobytes()
    with pytest.raises(MediaError):
        list(open_bytes(data, device_key=derive_key(b"\0" * 32, "media"))[1])

    # Nothing in plaintext at rest: not on the device, not in the connector's data dir.
    _no_plaintext(Path(settings.paths.media_dir), pcm)
    _no_plaintext(Path(hr_clip_settings.connector.data_dir) / "clips", pcm)

    # A clip altered at HR is refused, never half-played.
    stored = Path(conn.db.clip(audio_id)["path"])
    raw = bytearray(stored.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    stored.write_bytes(bytes(raw))
    assert hr_main(["--config", str(cfg), "clip", "export", audio_id, "--out", str(out / "x.wav")]) == 2
    assert "does not authenticate" in capsys.readouterr().err
    assert not (out / "x.wav").exists()
    store.close()


def test_altered_chunks_or_metadata_are_refused(settings, clip_key, tmp_path):
    hr = load_clip_private_key(clip_key)
    media, _, pcm = _record(settings, "s-tamper", hr_public_key=hr.public_key())
    data = Path(media[1]["path"]).read_bytes()
    assert b"".join(c for _, c in decrypt_clip(data, hr)[1]) == pcm.tobytes()
    chunk_flip = bytearray(data)
    chunk_flip[-40] ^= 0x02
    with pytest.raises(MediaError, match="does not authenticate"):
        decrypt_clip(bytes(chunk_flip), hr)
    # The header's metadata is bound to the key wraps: a changed sample rate is noticed.
    meta_edit = data.replace(b'"samplerate": 16000', b'"samplerate": 44100')
    assert meta_edit != data
    with pytest.raises(MediaError, match="does not unwrap"):
        decrypt_clip(meta_edit, hr)
    truncated = data[: len(data) - 100]
    with pytest.raises(MediaError):
        decrypt_clip(truncated, hr)


def test_sealing_later_keeps_the_recording_and_changes_only_its_header(settings, clip_key):
    hr = load_clip_private_key(clip_key)
    media, _, pcm = _record(settings, "s-late")
    path = Path(media[1]["path"])
    before = path.read_bytes()
    with pytest.raises(MediaError, match="not sealed for HR"):
        decrypt_clip(before, hr)
    key = derive_key(load_master_key(settings.paths.key_dir), "media")
    assert seal_for_hr(path, key, hr.public_key()) is True
    assert seal_for_hr(path, key, hr.public_key()) is False   # already sealed for this key
    after = path.read_bytes()
    assert after[-2000:] == before[-2000:]   # the chunks are untouched
    assert b"".join(c for _, c in decrypt_clip(after, hr)[1]) == pcm.tobytes()
    assert b"".join(c for _, c in read_media(path, key)[1]) == pcm.tobytes()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(MediaError):
        seal_for_hr(path, derive_key(b"\1" * 32, "media"), X25519PrivateKey.generate().public_key())


def test_clips_wait_for_the_hr_key_and_settle_only_without_https(sync_settings, connector):
    settings = sync_settings()
    store = Store.open_from_settings(settings)
    sid, media, _, _ = _answer_with_media(store, settings)
    from sync.https import HttpsUplink

    up = HttpsUplink(settings)
    key = derive_key(load_master_key(settings.paths.key_dir), "media")
    assert deliver_clips_once(store, up, clock=lambda: 1000.0, media_key=key) == 0
    rows = _clip_rows(store)
    # The session's head clip waits (the next one queues behind it), attempts not counted.
    assert rows[0].last_error == NO_CLIP_KEY and rows[0].next_attempt > 1000.0
    assert all(r.delivered is None and r.attempts == 0 for r in rows)
    assert store.outbox_stats(1000.0)["by_kind"]["clip"] == 2
    assert connector.db.clip(media[0]["id"]) is None   # nothing HR could not open was sent
    up.close()
    # With [sync.https] configured the daemon never settles them ...
    d = SyncDaemon(settings, store, start_wecom=False)
    assert not d._settle_clips
    # Counted apart from the records, so HR's "result undelivered" alarm is not about clips.
    hb = d.heartbeat()
    assert hb["clips_pending"] == 2 and hb["clip_key"] is False
    assert hb["outbox_depth"] == store.outbox_stats(1000.0)["depth"] - 2
    d.step()
    assert all(r.delivered is None for r in _clip_rows(store))
    # ... without it nobody could upload them: settled with a note, files kept for retention.
    plain = SyncDaemon(sync_settings(https=None), store, start_wecom=False)
    plain.step()
    rows = _clip_rows(store)
    assert all(r.delivered and r.last_error == HTTPS_OFF_NOTE for r in rows)
    assert all(Path(m["path"]).exists() for m in media)
    assert settle_unsendable_clips(store, 2000.0) == 0
    assert hashlib.sha256(Path(media[0]["path"]).read_bytes()).hexdigest() == media[0]["sha256"]
    store.close()


def test_hr_makes_its_clip_key_and_enrolment_bundles_carry_it(
        tmp_path, site_pki, broker_port, https_port, hr_key_path, hr_config_file, capsys):
    from sync import pki
    from sync.signing import load_public_key, verify_document

    key = tmp_path / "keys" / "clips.key"
    assert hr_main(["clip-key", str(key)]) == 0
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert "PRIVATE" not in capsys.readouterr().out           # keys are never printed
    assert hr_main(["clip-key", str(key)]) == 2                # never overwritten
    s = connector_config(tmp_path, site_pki, broker_port, https_port, hr_key_path,
                         signing={"clip_key_file": str(key)},
                         enrol={"ca_cert_file": str(site_pki.ca.cert), "ca_key_file": str(site_pki.ca.key),
                                "mqtt_host": "127.0.0.1"})
    cfg = hr_config_file(s)
    csr = tmp_path / "dev.csr"
    csr.write_bytes(pki.make_csr(tmp_path / "dev.key", "kiosk-clip-01"))
    out = tmp_path / "dev.enrol.json"
    assert hr_main(["--config", str(cfg), "enrol-device", str(csr), "--out", str(out)]) == 0
    bundle = json.loads(out.read_text())
    verify_document(load_public_key(bundle["downlink_public_key_pem"].encode()), bundle)
    assert bundle["clip_public_key_pem"] == key.with_suffix(".pub").read_text()
    # An export without the HR clip key configured says what is missing.
    bare = connector_config(tmp_path, site_pki, broker_port, https_port, hr_key_path)
    with pytest.raises(SystemExit, match="no HR clip key"):
        hr_main(["--config", str(hr_config_file(bare)), "clip", "export", "x", "--out", str(tmp_path / "o.wav")])


def test_a_signed_clip_key_command_releases_the_waiting_clips(sync_settings, connector, hr_key, clip_key):
    from sync.connector.publish import down_topic, make_envelope
    from sync.https import HttpsUplink

    settings = sync_settings()
    store = Store.open_from_settings(settings)
    _, media, _, pcm = _answer_with_media(store, settings)
    d = SyncDaemon(settings, store, start_wecom=False)
    up = HttpsUplink(settings)
    assert deliver_clips_once(store, up, clock=lambda: 1000.0, media_key=d.media_key()) == 0
    assert _clip_rows(store)[0].last_error == NO_CLIP_KEY
    topic = down_topic("default", settings.device.id, "command")

    def command(pem: str, version: int) -> bytes:
        env = make_envelope(hr_key, kind="command", tenant="default", version=version,
                            payload={"type": "clip_key", "pem": pem}, device_id=settings.device.id)
        return env.model_dump_json().encode()

    # Not an X25519 key: authentic, but not installed; the clips keep waiting.
    ed_pem = Path(settings.sync.downlink_public_key_file).read_text()
    d.cache.handle(topic, command(ed_pem, 1))
    assert store.cache_get("pubkey", "clips") is None
    d.cache.handle(topic, command(clip_key.with_suffix(".pub").read_text(), 2))
    assert store.cache_get("pubkey", "clips")[1]["pem"] == clip_key.with_suffix(".pub").read_text()
    assert _clip_rows(store)[0].next_attempt == 0        # due at once, not in 5 minutes
    assert deliver_clips_once(store, up, clock=lambda: 1001.0, media_key=d.media_key()) == 1
    assert deliver_clips_once(store, up, clock=lambda: 1002.0, media_key=d.media_key()) == 1
    assert all(r.delivered for r in _clip_rows(store))
    # The connector stored both; the audio opens with HR's key.
    c = connector.db.clip(media[1]["id"])
    stored = ClipFile(c["path"], connector.endpoint.clip_key, c["id"]).read()
    assert b"".join(x for _, x in decrypt_clip(stored, load_clip_private_key(clip_key))[1]) == pcm.tobytes()
    up.close()
    store.close()
