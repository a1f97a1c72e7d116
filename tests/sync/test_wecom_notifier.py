"""HR's WeCom messages: from notify outbox rows to the fake WeCom server, through outages."""

from __future__ import annotations

import pytest

from device.records import topic
from sync.wecom.notifier import Notifier, mask_name
from tests.sync import wecom_env
from tests.sync.wecom_env import HR_ONCALL, client_for

# The shared WeCom fixtures (pytest finds fixtures by module attribute).
fake_wecom = wecom_env.fake_wecom
tls_files = wecom_env.tls_files
wecom_settings = wecom_env.wecom_settings

T0 = 1_790_000_000.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def env(wecom_settings, fake_wecom, store):
    clock = Clock()
    notifier = Notifier(store, wecom_settings, client_for(fake_wecom), clock=clock)
    return notifier, clock, store, fake_wecom, wecom_settings


def notify(store, settings, type_: str, ts: float, session_id: str = "sess-1", **extra) -> str:
    payload = {
        "type": type_, "ts": ts, "session_id": session_id, "entry_id": "E-001",
        "candidate_name": "王小明", "job_id": "cashier", "job_title": "收银员 Cashier", **extra,
    }
    return store.enqueue("notify", topic(settings, "notify"), payload, session_id=session_id)


def test_mask_name():
    assert mask_name("张三") == "张*"
    assert mask_name("王小明") == "王*明"
    assert mask_name("欧阳娜娜") == "欧**娜"
    assert mask_name("Alice Smith") == "A*** S."


def test_help_card_reaches_hr_oncall_with_terminal_and_activity(env):
    notifier, clock, store, fake, settings = env
    notify(store, settings, "help", T0, activity="第2/5题 作答中 · question 2/5, answering")
    assert notifier.run_once() == 1
    [m] = fake.messages
    assert m["touser"] == "|".join(HR_ONCALL)
    assert m["msgtype"] == "textcard"
    desc = m["textcard"]["description"]
    assert "kiosk-test-01" in desc and "上海总部 前台" in desc and "A座 1楼" in desc
    assert "question 2/5" in desc
    assert "王*明" in desc and "王小明" not in str(m)  # masked per config


def test_help_presses_within_a_minute_send_one_message(env):
    notifier, clock, store, fake, settings = env
    for dt_ in (0, 10, 45):
        notify(store, settings, "help", T0 + dt_)
    clock.t = T0 + 50
    notifier.run_once()
    notifier.run_once()
    assert len(fake.messages) == 1
    assert notifier.collapsed == 2
    notify(store, settings, "help", T0 + 130)  # a new press well after the minute
    clock.t = T0 + 131
    notifier.run_once()
    assert len(fake.messages) == 2
    assert store.outbox_stats(clock.t)["depth"] == 0


def test_finished_summary_has_score_recommendation_flags_and_report_but_no_transcript(env):
    notifier, clock, store, fake, settings = env
    notify(
        store, settings, "finished", T0, total=78, recommendation="yes",
        integrity_flags=["多人入镜 two faces"], end_reason="completed",
        report_ref="EHR → 面试报告 → 王*明", transcript="我在上一家公司负责收银和盘点",
    )
    notifier.run_once()
    [m] = fake.messages
    assert m["msgtype"] == "markdown"
    content = m["markdown"]["content"]
    assert "78" in content and "推荐" in content and "多人入镜" in content
    assert "EHR → 面试报告" in content
    assert "收银和盘点" not in content and "王小明" not in content


def test_started_declined_and_hardware_failure_notify_hr(env):
    notifier, clock, store, fake, settings = env
    notify(store, settings, "started", T0, session_id="s1")
    notify(store, settings, "declined", T0, session_id="s2")
    notify(store, settings, "hardware_failed", T0, session_id="s3", component="camera", detail="camera unplugged")
    notifier.run_once()
    kinds = [(m["msgtype"], m.get("markdown", m.get("textcard"))) for m in fake.messages]
    assert len(kinds) == 3
    text = str(kinds)
    assert "Interview started" in text and "Consent declined" in text and "camera" in text


def test_names_unmasked_when_config_says_so(make_settings, wecom_settings, fake_wecom, store):
    settings = make_settings({"wecom": {**wecom_settings.wecom.model_dump(mode="json"), "mask_names": False}})
    notifier = Notifier(store, settings, client_for(fake_wecom), clock=Clock())
    notify(store, settings, "started", T0)
    notifier.run_once()
    assert "王小明" in fake_wecom.messages[0]["markdown"]["content"]


def test_outage_delays_messages_then_delivers_each_once(env):
    notifier, clock, store, fake, settings = env
    fake.go_down()
    notify(store, settings, "help", T0, session_id="s1")
    notify(store, settings, "finished", T0 + 1, session_id="s2", total=66, recommendation="maybe")
    assert notifier.run_once() == 0
    assert fake.messages == []
    rows = store.due_outbox(T0 + 3600, kinds=["notify"])
    assert len(rows) == 2 and all(r.attempts == 1 and r.last_error for r in rows)
    clock.t += 2
    notifier.run_once()  # still backing off, and still down
    fake.come_back()
    clock.t += 3600
    assert notifier.run_once() == 2
    clock.t += 3600
    notifier.run_once()
    assert sorted(m["msgtype"] for m in fake.messages) == ["markdown", "textcard"]
    assert store.outbox_stats(clock.t)["depth"] == 0


def test_rate_limit_is_retried_later_without_loss(env):
    notifier, clock, store, fake, settings = env
    notifier.client.sleep = lambda s: None
    notifier.client.get_user("hr.li")  # have a token
    fake.rate_limit(3)  # one call and two backed-off retries, all refused
    notify(store, settings, "started", T0)
    notifier.run_once()
    assert fake.messages == []
    clock.t += 3600
    notifier.run_once()
    assert len(fake.messages) == 1


def test_bad_payload_is_kept_and_does_not_block_others(env, caplog):
    notifier, clock, store, fake, settings = env
    bad = notify(store, settings, "selfie", T0, session_id="s-bad")
    notify(store, settings, "finished", T0, session_id="s-missing-total")  # no total
    notify(store, settings, "started", T0, session_id="s-ok")
    notifier.run_once()
    assert len(fake.messages) == 1
    assert "unknown type 'selfie'" in caplog.text and "missing 'total'" in caplog.text
    row = store.get_outbox(bad)
    assert row.delivered is None and "selfie" in row.last_error


def test_health_is_recorded_for_the_kiosk(env):
    notifier, clock, store, fake, settings = env
    assert notifier.probe() is True
    assert store.kv_get("wecom.health")["ok"] is True
    fake.go_down()
    clock.t += 1
    assert notifier.probe() is False
    health = store.kv_get("wecom.health")
    assert health["ok"] is False and health["at"] == clock.t and "unreachable" in health["error"]
    fake.come_back()
    notify(store, settings, "started", clock.t)
    notifier.run_once()
    assert store.kv_get("wecom.health")["ok"] is True


def test_resend_after_a_lost_acknowledgement_is_not_shown_twice(env):
    """Crash between WeCom's OK and our commit: the row is sent again, WeCom drops it."""
    notifier, clock, store, fake, settings = env
    rid = notify(store, settings, "finished", T0, total=80, recommendation="yes")
    notifier.run_once()
    with store.transaction():
        store.db.execute("UPDATE outbox SET delivered = NULL WHERE id = ?", [rid])
    clock.t += 10
    notifier.run_once()
    assert store.get_outbox(rid).delivered is not None
    assert len(fake.messages) == 1
