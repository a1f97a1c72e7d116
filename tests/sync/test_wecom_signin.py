"""Sign-in end to end: the QR on the screen, the phone's scan at the (fake) WeCom server, the
real HTTPS callback server, the verifications row the kiosk takes, the session machine."""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from device import signin
from device.audit import AuditLog
from device.keys import derive_key, load_master_key
from device.questions import install_bank, load_bank
from device.roster import install_roster
from device.session import SessionMachine, State, VerificationFailed, Verified
from sync.wecom import start_wecom, store_secret
from sync.wecom.callback import (
    SignInProcessor,
    handle_relay_command,
    relay_server,
    server_for_device,
)
from tests.sync import wecom_env
from tests.sync.wecom_env import NOW, OTHER_DEVICE, client_for, roster_for

fake_wecom = wecom_env.fake_wecom
tls_files = wecom_env.tls_files
wecom_settings = wecom_env.wecom_settings

REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def site(wecom_settings, store, fake_wecom, tls_files):
    """A device with today's roster, a question bank, and its callback server on HTTPS."""
    install_roster(store, roster_for(NOW, wecom_settings.device.id))
    install_bank(store, load_bank(REPO / "examples" / "question_bank.json"))
    audit = AuditLog(store, derive_key(load_master_key(wecom_settings.paths.key_dir), "audit"))
    clock = Clock()
    client = client_for(fake_wecom)
    processor = SignInProcessor(store, wecom_settings, client, audit, clock=clock)
    server = server_for_device(processor, wecom_settings.wecom).start()
    phone = httpx.Client(verify=str(tls_files[0]), timeout=10)
    try:
        yield Site(wecom_settings, store, fake_wecom, audit, clock, processor, server, phone)
    finally:
        phone.close()
        server.stop()


class Site:
    def __init__(self, settings, store, fake, audit, clock, processor, server, phone):
        self.settings, self.store, self.fake, self.audit = settings, store, fake, audit
        self.clock, self.processor, self.server, self.phone = clock, processor, server, phone

    def qr(self) -> signin.QrState:
        return signin.new_qr_state(self.store, self.settings, self.clock())

    def scan(self, qr_url: str, who: str) -> str:
        """The phone scans the screen's QR in WeCom: WeCom answers with a redirect."""
        u = urlparse(qr_url)
        at_fake = self.fake.root_url + u.path + "?" + u.query + "&as=" + who
        r = self.phone.get(at_fake, follow_redirects=False)
        assert r.status_code == 302, r.text
        return r.headers["location"]

    def open(self, redirect: str) -> httpx.Response:
        """The phone opens the redirect URI: our HTTPS callback server."""
        assert redirect.startswith("https://127.0.0.1:")
        return self.phone.get(redirect)

    def signin(self, who: str) -> httpx.Response:
        return self.open(self.scan(self.qr().url, who))

    def audit_reasons(self) -> list[str]:
        return [e.detail.get("reason", "ok") for e in self.audit.entries() if e.action.startswith("signin")]


def test_member_scans_the_qr_and_the_session_moves_to_welcome(site):
    machine = SessionMachine(site.store, site.settings, clock=site.clock)
    qr = site.qr()
    page = site.open(site.scan(qr.url, "zhang.san"))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "请看终端屏幕" in page.text and "look at the terminal screen" in page.text
    assert "张三" not in page.text  # the phone page carries no personal data
    row = signin.take_verification(site.store, site.settings.device.id, now=site.clock())
    assert row.ok and row.method == "wecom" and row.roster_entry.entry_id == "E-member"
    assert machine.handle(Verified(row.roster_entry, row.roster_entry.job_id, row.method, row.id)) is State.WELCOME
    assert site.audit_reasons() == ["ok"]
    [entry] = [e for e in site.audit.entries() if e.action == "signin.ok"]
    assert entry.detail["identity"] == "userid:zhang.san" and entry.detail["verification_id"] == row.id


def test_external_candidate_signs_in_with_openid_and_external_userid(site):
    page = site.signin("openid:o-candidate-7")
    assert "请看终端屏幕" in page.text
    row = signin.take_verification(site.store, site.settings.device.id, now=site.clock())
    assert row.ok and row.roster_entry.entry_id == "E-external"
    [entry] = [e for e in site.audit.entries() if e.action == "signin.ok"]
    assert entry.detail["identity"] == "external_userid:wmEXT-candidate-7"


def refused(site, reason: str, *, on_screen: bool = True) -> None:
    row = signin.take_verification(site.store, site.settings.device.id, now=site.clock())
    if on_screen:
        assert row is not None and not row.ok and row.reason == reason
        machine = SessionMachine(site.store, site.settings, clock=site.clock)
        machine.handle(VerificationFailed(row.reason))
        assert machine.state is State.VERIFYING and machine.state is not State.WELCOME
    else:
        assert row is None
    assert site.audit_reasons()[-1] == reason


def test_replayed_callback_is_refused(site):
    redirect = site.scan(site.qr().url, "zhang.san")
    assert "请看终端屏幕" in site.open(redirect).text
    signin.take_verification(site.store, site.settings.device.id, now=site.clock())
    page = site.open(redirect)  # the same URL again (back button, shared link)
    assert signin.MESSAGES["reused_state"][0] in page.text and signin.MESSAGES["reused_state"][1] in page.text
    refused(site, "reused_state")


def test_expired_qr_is_refused(site):
    qr = site.qr()
    redirect = site.scan(qr.url, "zhang.san")
    site.clock.t = qr.expires + 1
    page = site.open(redirect)
    assert signin.MESSAGES["expired_state"][0] in page.text
    refused(site, "expired_state")


def test_qr_of_another_device_is_wrong_device_and_leaves_this_screen_alone(site):
    other = signin.state_for(OTHER_DEVICE)
    code = site.fake.issue_code(userid="zhang.san")
    page = site.phone.get(site.server.url, params={"code": code, "state": other})
    assert signin.MESSAGES["wrong_device"][0] in page.text
    refused(site, "wrong_device", on_screen=False)


def test_candidate_booked_on_another_device_is_wrong_device(site):
    page = site.signin("li.si")
    assert signin.MESSAGES["wrong_device"][1] in page.text
    refused(site, "wrong_device")


def test_unknown_user_is_refused(site):
    page = site.signin("stranger")
    assert signin.MESSAGES["unknown_user"][0] in page.text
    refused(site, "unknown_user")
    site.signin("openid:o-nobody")
    refused(site, "unknown_user")


def test_candidate_not_on_todays_roster_is_off_roster(site):
    page = site.signin("wang.wu")  # booked yesterday
    assert signin.MESSAGES["off_roster"][0] in page.text
    refused(site, "off_roster")


def test_candidate_too_early_is_outside_slot(site):
    site.signin("openid:o-later")
    refused(site, "outside_slot")


def test_token_expiry_mid_day_is_refreshed_transparently(site):
    site.signin("zhang.san")
    assert signin.take_verification(site.store, site.settings.device.id, now=site.clock()).ok
    site.fake.expire_tokens()  # 7200 s later, as WeCom sees it
    page = site.signin("openid:o-candidate-7")
    assert "请看终端屏幕" in page.text
    assert signin.take_verification(site.store, site.settings.device.id, now=site.clock()).ok
    assert site.fake.calls.count("/cgi-bin/gettoken") == 2


def test_wecom_down_offers_the_fallbacks(site):
    redirect = site.scan(site.qr().url, "zhang.san")
    site.fake.go_down()
    page = site.open(redirect)
    assert "邀请二维码" in page.text and "interview code" in page.text
    refused(site, "wecom_unreachable")


def test_bad_requests_get_a_page_and_the_server_keeps_running(site):
    assert site.phone.get(site.server.url).status_code == 400
    assert site.phone.get(site.server.url, params={"code": "x"}).status_code == 400
    assert site.phone.get(site.server.url, params={"code": "x" * 5000, "state": "y"}).status_code == 400
    assert site.phone.get(site.server.url.replace("/wecom/callback", "/admin")).status_code == 404
    page = site.phone.get(site.server.url, params={"code": "forged", "state": site.qr().nonce})
    assert page.status_code == 200 and signin.MESSAGES["expired_state"][0] in page.text  # 40029
    assert "请看终端屏幕" in site.signin("zhang.san").text


def test_callback_is_https_only(site):
    plain = site.server.url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(plain, timeout=5)


def test_relay_mode_forwards_code_and_state_to_the_device(site):
    published: list[tuple[str, dict]] = []
    relay = relay_server(lambda dev, cmd: published.append((dev, cmd)),
                         redirect_uri="http://127.0.0.1/wecom/callback", host="127.0.0.1", port=0).start()
    try:
        redirect = site.scan(site.qr().url, "openid:o-candidate-7")
        q = {k: v[0] for k, v in parse_qs(urlparse(redirect).query).items()}
        page = httpx.get(relay.url, params=q, timeout=5)  # the phone reaches the connector
        assert "请看终端屏幕" in page.text
        [(device_id, cmd)] = published
        assert device_id == site.settings.device.id and cmd["type"] == "wecom_signin"
        outcome = handle_relay_command(site.processor, cmd)  # on the device, after the signed downlink
        assert outcome.ok
        row = signin.take_verification(site.store, site.settings.device.id, now=site.clock())
        assert row.ok and row.method == "relay" and row.roster_entry.entry_id == "E-external"
        assert handle_relay_command(site.processor, cmd).reason == "reused_state"  # replayed command
        assert handle_relay_command(site.processor, {"type": "wecom_signin"}) is None
    finally:
        relay.stop()


def test_start_wecom_runs_callback_and_notifier_until_stopped(wecom_settings, store, fake_wecom, tls_files):
    install_roster(store, roster_for(NOW, wecom_settings.device.id))
    store_secret(wecom_settings, fake_wecom.directory.secret)
    stop = threading.Event()
    commands: dict = {}
    threads = start_wecom(wecom_settings, store, stop, notify_interval_s=0.1,
                          register_command=lambda name, h: commands.__setitem__(name, h))
    try:
        assert {t.name for t in threads} == {"wecom-notifier", "wecom-callback"}
        assert "wecom_signin" in commands
        # The notifier delivers a queued message while the daemon runs.
        store.enqueue("notify", "t", {"type": "started", "ts": NOW, "session_id": "s", "candidate_name": "张三"})
        for _ in range(100):
            if fake_wecom.messages:
                break
            threading.Event().wait(0.05)
        assert fake_wecom.messages and fake_wecom.messages[0]["msgtype"] == "markdown"
        # The callback answers (a state it does not know: a refusal page, over HTTPS).
        r = httpx.get(wecom_settings.wecom.redirect_uri, params={"code": "c", "state": "abc"},
                      verify=str(tls_files[0]), timeout=5)
        assert r.status_code == 200
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
    assert not any(t.is_alive() for t in threads)


def test_start_wecom_without_secret_stays_off(wecom_settings, store, caplog):
    assert start_wecom(wecom_settings, store, threading.Event()) == []
    assert "kiosk-provision wecom set-secret" in caplog.text


def test_session_help_and_end_reach_hr_on_wecom(site):
    """The session machine's own notify rows, through the notifier, to the fake WeCom."""
    from device.session import Cancel, ConsentGiven, HelpRequested
    from sync.wecom.notifier import Notifier

    machine = SessionMachine(site.store, site.settings, clock=site.clock)
    site.signin("zhang.san")
    row = signin.take_verification(site.store, site.settings.device.id, now=site.clock())
    machine.handle(Verified(row.roster_entry, row.roster_entry.job_id, row.method, row.id))
    machine.handle(ConsentGiven())
    for _ in range(3):  # an anxious candidate presses help three times
        site.clock.t += 5
        machine.handle(HelpRequested())
    site.clock.t += 5
    machine.handle(Cancel())  # and leaves
    notifier = Notifier(site.store, site.settings, client_for(site.fake), clock=site.clock)
    notifier.run_once()
    msgs = site.fake.messages
    kinds = [m.get("markdown", m.get("textcard")) for m in msgs]
    assert all(m["touser"] == "hr.li|hr.wang" for m in msgs)
    assert sum(1 for m in msgs if m["msgtype"] == "textcard") == 1  # help collapsed to one
    text = str(kinds)
    assert "Interview started" in text and "Interview finished" in text and "abandoned" in text
    assert "张*" in text and "张三" not in text
    assert site.store.outbox_stats(site.clock.t)["by_kind"].get("notify", 0) == 0


def test_logs_never_hold_codes_tokens_or_names(site, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    qr = site.qr()
    redirect = site.scan(qr.url, "zhang.san")
    code = parse_qs(urlparse(redirect).query)["code"][0]
    site.open(redirect)
    site.open(redirect)  # a replay too
    token = site.processor.client.session.get(site.processor.client.access_token_key)
    assert token and code
    # The device's loggers and the libraries it uses (httpx here is the test's phone).
    ours = ("sync", "device", "wechatpy", "urllib3", "requests")
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.split(".")[0] in ours)
    assert code not in text and token not in text and qr.nonce not in text
    assert "张三" not in text and site.fake.directory.secret not in text
    assert "sign-in via wecom: ok" in text and "reused_state" in text
