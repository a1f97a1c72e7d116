"""The real kiosk UI offscreen, driven through its buttons like a candidate would."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication

from device.keys import derive_key, load_master_key
from kiosk.media import MediaError, decrypt_audio, read_media

from .conftest import PIN

pytestmark = pytest.mark.timeout(180)


def _notify_types(store) -> list[str]:
    rows = store.db.query("SELECT payload FROM outbox WHERE kind = 'notify' ORDER BY created")
    return [json.loads(r["payload"])["type"] for r in rows]


def _answer(k, wav) -> None:
    w = k.window
    k.wait_state("prepare")
    w.question.start.click()
    k.wait_state("answer")
    k.mic.play(wav)
    k.qtbot.waitUntil(lambda: not k.mic.playing, timeout=20000)
    k.qtbot.wait(300)
    w.question.done.click()
    k.wait_state("review", timeout=30)


def test_full_interview_records_encrypted_answers_and_commits_the_result(make_kiosk, media):
    k = make_kiosk()
    w = k.window
    k.wait_state("idle")
    k.shot("idle", ["欢迎参加面试", "使用面试码签到"])
    w.toggle_language()
    k.shot("idle-en", ["Welcome to your interview", "Sign in with interview code"])
    w.toggle_language()
    w.idle.code_btn.click()
    w.idle.type_code(k.code)
    k.shot("code", ["输入面试码", " ".join(k.code)])
    w.idle.code_page.ok.click()
    k.wait_state("welcome")
    k.shot("welcome", ["我同意，开始", "我不同意", "本次面试将录制您的视频和声音"])
    w.welcome.yes.click()
    k.wait_state("device_check")
    k.qtbot.waitUntil(lambda: w.check.go.isEnabled(), timeout=20000)
    k.shot("device_check", ["设备检查", "摄像头", "麦克风", "继续"])
    w.check.go.click()
    k.wait_state("prepare")
    k.shot("prepare", ["第 1 / 2 题", "开始回答", "请简单介绍一下你自己"])
    w.question.start.click()
    k.wait_state("answer")
    k.mic.play(media["answers"][0])
    k.qtbot.wait(1500)
    k.shot("answer", ["正在录制", "回答完毕"])
    k.qtbot.waitUntil(lambda: not k.mic.playing, timeout=20000)
    w.question.done.click()
    k.wait_state("review", timeout=30)
    k.shot("review", ["回答已保存", "下一题"])
    w.question.next.click()
    _answer(k, media["answers"][1])
    k.shot("review-last", ["完成面试"])
    w.question.next.click()
    k.wait_state("done", timeout=30)
    k.shot("done", ["面试完成，谢谢您！"])

    store = k.store
    sessions = list(store.db.query("SELECT id, end_reason FROM sessions"))
    assert [s["end_reason"] for s in sessions] == ["completed"]
    answers = list(store.db.query("SELECT idx, attempt, media FROM answers ORDER BY idx"))
    assert [a["idx"] for a in answers] == [0, 1]
    media_rows = list(store.db.query("SELECT * FROM media WHERE session_id = ?", [sessions[0]["id"]]))
    assert sorted(m["kind"] for m in media_rows) == ["audio", "audio", "video", "video"]
    master = load_master_key(k.settings.paths.key_dir)
    key = derive_key(master, "media")
    for m in media_rows:
        raw = open(m["path"], "rb").read()
        assert b"JFIF" not in raw and b"RIFF" not in raw  # nothing readable on disk
        header, chunks = read_media(m["path"], key)
        n = sum(1 for _ in chunks)
        assert n > 5, f"{m['kind']} recording has only {n} chunks"
    audio = [m for m in media_rows if m["kind"] == "audio"]
    pcm = decrypt_audio(audio[0]["path"], key)
    assert len(pcm) > 16000 and abs(pcm.astype(int)).max() > 3000  # the spoken answer is in it
    with pytest.raises(MediaError):
        list(read_media(audio[0]["path"], derive_key(master, "store"))[1])
    result = json.loads(next(iter(store.db.query("SELECT record FROM results")))["record"])
    assert result["end_reason"] == "completed" and len(result["answers"]) == 2
    assert "finished" in _notify_types(store)


def test_consent_declined_ends_politely_and_tells_hr(make_kiosk):
    k = make_kiosk()
    k.wait_state("idle")
    k.sign_in()
    k.window.welcome.no.click()
    k.wait_state("declined")
    k.shot("declined", ["好的，我们尊重您的选择", "不会录制任何内容"])
    assert "declined" in _notify_types(k.store)
    assert not list(k.store.db.query("SELECT * FROM media"))
    assert not k.pipeline.recording


def test_help_calls_hr_and_returns_to_the_question(make_kiosk):
    k = make_kiosk()
    w = k.window
    k.wait_state("idle")
    assert not w.header.help.isVisible()  # no help button before a session
    k.sign_in()
    w.welcome.yes.click()
    k.pass_device_check()
    k.wait_state("prepare")
    assert w.header.help.isVisible()
    w.header.help.click()
    k.wait_state("help")
    k.shot("help", ["已通知工作人员", "问题已解决，继续面试"])
    assert "help" in _notify_types(k.store)
    w.screens["help"].buttons["help_resolved"].click()
    k.wait_state("prepare")
    assert w.current_screen() is w.question


def test_candidate_leaving_the_frame_pauses_and_resumes(make_kiosk):
    k = make_kiosk("leaving")
    w = k.window
    k.wait_state("idle")
    k.sign_in()
    w.welcome.yes.click()
    k.pass_device_check()
    k.wait_state("prepare")
    k.wait_state("paused", timeout=20)   # the face video goes empty
    k.shot("paused", ["面试已暂停", "请回到摄像头前"])
    k.wait_state("prepare", timeout=20)  # and the face comes back
    events = [json.loads(r["payload"])["type"] for r in
              k.store.db.query("SELECT payload FROM outbox WHERE kind = 'event' ORDER BY created")]
    assert "paused" in events and "resumed" in events


def test_camera_unplugged_mid_answer_fails_and_keeps_earlier_answers(make_kiosk, media):
    k = make_kiosk("face", loop=True)
    w = k.window
    k.wait_state("idle")
    k.sign_in()
    w.welcome.yes.click()
    k.pass_device_check()
    _answer(k, media["answers"][0])
    w.question.next.click()
    k.wait_state("prepare")
    w.question.start.click()
    k.wait_state("answer")
    k.mic.play(media["answers"][1])
    k.camera.loop = False  # the 4 s video now ends: the camera is gone
    k.wait_state("failed", timeout=15)
    k.shot("failed", ["设备出现问题", "摄像头"])
    session = next(iter(k.store.db.query("SELECT id, end_reason FROM sessions")))
    assert session["end_reason"] == "failed"
    answers = list(k.store.db.query("SELECT idx FROM answers"))
    assert [a["idx"] for a in answers] == [0]  # the finished answer is kept
    kinds = sorted(m["kind"] for m in k.store.db.query("SELECT kind FROM media"))
    assert kinds == ["audio", "video"]  # the interrupted answer's partial files are gone
    assert "hardware_failed" in _notify_types(k.store)
    assert not k.pipeline.recording
    # Back at the start screen the kiosk tries the camera again (replugged).
    from device.session import Reset

    k.window._send(Reset())
    k.wait_state("idle")
    k.qtbot.waitUntil(lambda: k.camera.alive, timeout=5000)


def test_technician_pin_locks_after_five_wrong_tries_and_shortcuts_are_ignored(make_kiosk):
    k = make_kiosk()
    w = k.window
    k.wait_state("idle")
    # Closing shortcuts do nothing for a candidate.
    for key, mods in ((Qt.Key_Escape, Qt.NoModifier), (Qt.Key_F4, Qt.AltModifier),
                      (Qt.Key_Q, Qt.ControlModifier)):
        QApplication.sendEvent(w, QKeyEvent(QKeyEvent.KeyPress, key, mods))
    assert not w.close() and w.isVisible()
    for _ in range(4):
        w.header.logo.click()
    assert w.current_screen() is not w.tech  # four taps are not the gesture
    w.header.logo.click()
    assert w.current_screen() is w.tech
    k.shot("technician-pin", ["技术人员登录"])

    def enter(pin: str) -> None:
        for ch in pin:
            w.tech.entry.keypad.buttons[ch].click()
        w.tech.entry.ok.click()
        k.qtbot.waitUntil(w.tech.entry.ok.isEnabled, timeout=5000)  # checked off the GUI thread

    for i in range(4):
        enter("0000")
        assert f"还可尝试 {4 - i} 次" in w.tech.entry.error.text()
    enter("0000")
    assert "尝试次数过多" in w.tech.entry.error.text()
    enter(PIN)
    assert not w.technician, "the right PIN must be refused while locked"
    k.shot("technician-locked", ["尝试次数过多"])
    k.clock.offset = 301  # the lockout expires
    enter(PIN)
    assert w.technician
    k.qtbot.waitUntil(lambda: k.settings.device.id in w.tech.info.text(), timeout=5000)
    k.shot("technician-panel", ["维护模式", "返回面试模式"])
    audit = list(k.store.db.query("SELECT action FROM audit WHERE action = 'technician.pin'"))
    assert len(audit) == 7
    w.tech.leave.click()
    assert not w.technician and w.current_screen() is w.idle
