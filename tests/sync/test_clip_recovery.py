"""Answer-clip delivery recovering from what the field does to it: HR rotating the clip key
while a clip is half uploaded (the upload restarts for the new sealing and completes; a
completed clip at HR is never replaced), a clip HR refuses for good (it parks, visible, and
its session's other clips still go), and a crash while sealing leaving `.ikm.tmp` files."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from device import session as S
from device.keys import derive_key, load_master_key
from device.mediacrypt import (
    generate_clip_key,
    hr_key_id,
    key_id,
    load_clip_private_key,
    remove_stale_seal_tmp,
    seal_for_hr,
)
from device.session import SessionMachine, State
from device.store import Store
from provisioning.__main__ import main as kp_main
from sync.connector.__main__ import main as hr_main
from sync.connector.clips import decrypt_clip
from sync.connector.endpoint import ClipFile
from sync.connector.service import Connector
from sync.daemon import SyncDaemon
from sync.https import HttpsUplink, UplinkError
from sync.outbox import CLIP_PARK_RETRY_S, CLIP_PARKED, deliver_clips_once, install_clip_key
from tests.device.test_session import Clock, make_bank, to_state
from tests.sync.conftest import DaemonThread, wait_for
from tests.sync.test_clips import _answer_with_media, _clip_rows, _insert_media, _record


def _clip_keys(tmp_path: Path, *names: str) -> list[Path]:
    out = []
    for n in names:
        p = tmp_path / "hr-keys" / f"{n}.key"
        generate_clip_key(p, p.with_suffix(".pub"))
        out.append(p)
    return out


def _stored(connector, clip_id: str) -> bytes:
    c = connector.db.clip(clip_id)
    return ClipFile(c["path"], connector.endpoint.clip_key, c["id"]).read()


def test_a_clip_key_rotation_mid_upload_restarts_the_upload_and_a_completed_clip_stays(
        sync_settings, connector, hr_settings, hr_config_file, tmp_path, capsys):
    settings = sync_settings()
    store = Store.open_from_settings(settings)
    _, media, _, pcm = _answer_with_media(store, settings)
    old, new, third = _clip_keys(tmp_path, "old", "new", "third")
    d = SyncDaemon(settings, store, start_wecom=False)
    install_clip_key(store, old.with_suffix(".pub").read_text(), 1)
    up = HttpsUplink(settings)
    video = media[0]
    path = Path(video["path"])

    # Sealed for the old key, and cut off after the first chunk (a dropped link).
    seal_for_hr(path, d.media_key(), load_clip_private_key(old).public_key())
    stop = threading.Event()
    with pytest.raises(UplinkError, match="stopped"):
        up.upload_clip(video["id"], path, {"kind": "video"}, chunk_bytes=4096, stop=stop,
                       on_progress=lambda _o, _n: stop.set())
    part = connector.db.clip(video["id"])
    assert part["received_bytes"] == 4096 and not part["completed"]

    # HR rotates the key: the daemon reseals for it; the connector drops the old partial
    # upload and takes the new sealing from the start, instead of answering 409 forever.
    install_clip_key(store, new.with_suffix(".pub").read_text(), 2)
    assert deliver_clips_once(store, up, clock=lambda: 1000.0, media_key=d.media_key()) == 1
    assert deliver_clips_once(store, up, clock=lambda: 1001.0, media_key=d.media_key()) == 1
    assert all(r.delivered for r in _clip_rows(store))
    sha_now = hashlib.sha256(path.read_bytes()).hexdigest()
    c = connector.db.clip(video["id"])
    assert c["completed"] and c["sha256"] == sha_now and c["length"] == path.stat().st_size
    stored = _stored(connector, video["id"])
    assert hr_key_id(stored) == key_id(load_clip_private_key(new).public_key())
    assert len(decrypt_clip(stored, load_clip_private_key(new))[1]) == 12   # every frame
    audio = _stored(connector, media[1]["id"])
    assert b"".join(x for _, x in decrypt_clip(audio, load_clip_private_key(new))[1]) == pcm.tobytes()

    # The device crashed after HR completed the clip but before it marked the row delivered,
    # and the key rotates again: the resealed file differs from the stored clip. HR's
    # completed clip is never replaced; the device says so once a day instead of hammering.
    with store.transaction():
        store.db.execute("UPDATE outbox SET delivered = NULL, next_attempt = 0 WHERE id = ?",
                         (video["id"],))
    install_clip_key(store, third.with_suffix(".pub").read_text(), 3)
    assert deliver_clips_once(store, up, clock=lambda: 2000.0, media_key=d.media_key()) == 0
    row = store.get_outbox(video["id"])
    assert row.delivered is None and row.last_error.startswith(CLIP_PARKED)
    assert "409" in row.last_error and row.next_attempt == 2000.0 + CLIP_PARK_RETRY_S
    assert deliver_clips_once(store, up, clock=lambda: 2060.0, media_key=d.media_key()) == 0
    assert store.get_outbox(video["id"]).attempts == row.attempts   # not retried within the day
    assert _stored(connector, video["id"]) == stored                 # HR's copy untouched
    hb = d.heartbeat()
    assert hb["clips_failed"] == 1 and hb["clips_pending"] == 1
    # HR's device table shows it (the heartbeat as the connector stores it).
    connector.db.update_device(settings.device.tenant, settings.device.id, heartbeat=hb, at=time.time())
    capsys.readouterr()
    assert hr_main(["--config", str(hr_config_file(hr_settings)), "devices"]) == 0
    assert "1 failed" in capsys.readouterr().out
    up.close()
    store.close()


def test_a_conflicted_clip_parks_and_its_sessions_other_clips_and_records_still_arrive(
        sync_settings, sync_config_file, broker_on_port, hr_settings, tmp_path, capsys):
    settings = sync_settings()
    broker = broker_on_port()
    broker.start()
    conn = Connector(hr_settings).start()
    store = Store.open_from_settings(settings)
    try:
        assert conn.subscriber.subscribed.wait(10)
        (hr,) = _clip_keys(tmp_path, "hr")
        install_clip_key(store, hr.with_suffix(".pub").read_text(), 1)
        # One interview: an answer with two recordings (video, then audio), then the candidate
        # leaves; the machine queues its events and result as in the field.
        machine = SessionMachine(store, settings, clock=Clock(), bank=make_bank())
        sid = to_state(machine, machine.clock, State.ANSWER)
        media, _, pcm = _record(settings, sid)
        _insert_media(store, sid, media)
        machine.handle(S.AnswerFinished("测试回答", {}, media, 1.3))
        assert machine.handle(S.Cancel()) in (State.ABANDONED, State.IDLE)
        video, audio = media
        assert [r.id for r in _clip_rows(store)] == [video["id"], audio["id"]]
        with store.lock:
            records = [r[0] for r in store.db.execute(
                "SELECT id FROM outbox WHERE session_id = ? AND kind IN ('result', 'event')"
                " ORDER BY seq", (sid,))]
        assert len(records) >= 3

        # HR already holds a different completed clip under the video's id.
        other = tmp_path / "other.ikm"
        other.write_bytes(os.urandom(6000))
        up = HttpsUplink(settings)
        up.upload_clip(video["id"], other, {"kind": "video"})
        up.close()
        held = _stored(conn, video["id"])

        with DaemonThread(settings) as d:
            wait_for(lambda: store.get_outbox(audio["id"]).delivered, 30, 0.1,
                     "the audio clip uploaded past the conflicted video clip")
            wait_for(lambda: all(store.get_outbox(i).delivered for i in records), 30, 0.1,
                     "the session's records delivered")
            hb = d.daemon.heartbeat()
        # The conflicted clip is parked: kept, undelivered, retried daily, counted.
        row = store.get_outbox(video["id"])
        assert row.delivered is None and row.last_error.startswith(CLIP_PARKED)
        assert row.next_attempt > time.time() + CLIP_PARK_RETRY_S / 2
        assert Path(video["path"]).exists()
        assert hb["clips_failed"] == 1 and hb["clips_pending"] == 1
        # HR's copy is untouched; the audio arrived whole and opens with HR's key.
        assert _stored(conn, video["id"]) == held
        got = _stored(conn, audio["id"])
        assert b"".join(c for _, c in decrypt_clip(got, load_clip_private_key(hr))[1]) == pcm.tobytes()
        # The records arrived once each, in the order the session committed them.
        wait_for(lambda: len([m for m in conn.db.messages() if m.session_id == sid]) == len(records),
                 30, 0.1, "the connector has the session's records")
        assert [m.id for m in conn.db.messages() if m.session_id == sid] == records

        # The technician sees which clip is parked and why in `kiosk-provision status`.
        cfg = sync_config_file()
        capsys.readouterr()
        assert kp_main(["status", "--json", "--config", str(cfg)]) == 0
        info = json.loads(capsys.readouterr().out)
        parked = info["clips_parked"]
        assert [c["media_id"] for c in parked] == [video["id"]]
        assert parked[0]["session_id"] == sid and "409" in parked[0]["error"]
        assert kp_main(["status", "--lang", "en", "--config", str(cfg)]) == 0
        text = capsys.readouterr().out
        assert video["id"][:8] in text and "conflict" in text
    finally:
        store.close()
        conn.stop()


def test_a_clip_whose_recording_is_gone_parks_and_the_next_one_still_uploads(
        sync_settings, connector, tmp_path):
    """A permanent refusal that is not a 409 (here the recording file was lost) parks the
    clip for a day instead of retrying it every few minutes in front of the session's others."""
    from sync.outbox import parked_clips

    settings = sync_settings()
    store = Store.open_from_settings(settings)
    _, media, _, pcm = _answer_with_media(store, settings)
    (hr,) = _clip_keys(tmp_path, "hr")
    d = SyncDaemon(settings, store, start_wecom=False)
    install_clip_key(store, hr.with_suffix(".pub").read_text(), 1)
    up = HttpsUplink(settings)
    video, audio = media
    Path(video["path"]).unlink()  # the first clip of the session: lost (disk fault)

    deliver_clips_once(store, up, clock=lambda: 1000.0, media_key=d.media_key())
    row = store.get_outbox(video["id"])
    assert row.delivered is None and row.last_error.startswith(CLIP_PARKED) and "missing" in row.last_error
    assert row.next_attempt == 1000.0 + CLIP_PARK_RETRY_S
    assert [c["media_id"] for c in parked_clips(store)] == [video["id"]]
    # The session's second clip is not held back behind it.
    deliver_clips_once(store, up, clock=lambda: 1001.0, media_key=d.media_key())
    assert store.get_outbox(audio["id"]).delivered is not None
    got = decrypt_clip(_stored(connector, audio["id"]), load_clip_private_key(hr))[1]
    assert b"".join(x for _, x in got) == pcm.tobytes()
    assert d.heartbeat()["clips_failed"] == 1
    store.close()


def test_seal_for_hr_replaces_a_leftover_tmp_and_never_writes_through_it(settings, tmp_path):
    (key_path,) = _clip_keys(tmp_path, "hr")
    hr = load_clip_private_key(key_path)
    media, _, pcm = _record(settings, "s-tmp")
    path = Path(media[1]["path"])
    mkey = derive_key(load_master_key(settings.paths.key_dir), "media")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b"half a header from a crash" * 1000)
    victim = tmp_path / "elsewhere.txt"
    victim.write_text("not the kiosk's")
    assert seal_for_hr(path, mkey, hr.public_key()) is True
    assert not tmp.exists()
    assert b"".join(c for _, c in decrypt_clip(path.read_bytes(), hr)[1]) == pcm.tobytes()
    # A leftover that is a symlink is removed, not followed.
    tmp.symlink_to(victim)
    (other,) = _clip_keys(tmp_path, "other")
    assert seal_for_hr(path, mkey, load_clip_private_key(other).public_key()) is True
    assert victim.read_text() == "not the kiosk's" and not tmp.is_symlink()


def test_stale_sealing_tmp_files_are_swept_and_live_ones_kept(sync_settings, tmp_path):
    settings = sync_settings()
    store = Store.open_from_settings(settings)
    media_dir = Path(settings.paths.media_dir)
    (media_dir / "s1").mkdir(parents=True, exist_ok=True)
    stale = media_dir / "s1" / "rec-0001.video.ikm.tmp"
    live = media_dir / "s1" / "rec-0002.audio.ikm.tmp"
    recording = media_dir / "s1" / "rec-0001.video.ikm"
    for p in (stale, live, recording):
        p.write_bytes(os.urandom(256))
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    os.utime(recording, (two_hours_ago, two_hours_ago))   # old recordings are retention's
    d = SyncDaemon(settings, store, start_wecom=False)
    assert d.sweep_seal_tmp() == 1
    assert not stale.exists() and live.exists() and recording.exists()
    # The daemon's clip thread sweeps when it starts.
    os.utime(live, (two_hours_ago, two_hours_ago))
    d.start()
    try:
        deadline = time.monotonic() + 10
        while live.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not live.exists() and recording.exists()
    finally:
        d.stop()
    assert remove_stale_seal_tmp(media_dir / "missing") == 0
    store.close()
