"""The WeCom client against the fake WeCom server, through real wechatpy and real HTTP."""

from __future__ import annotations

import pytest
import requests

from sync.wecom.client import WecomClient, WecomError, WecomRateLimited, WecomUnreachable
from sync.wecom.fakeserver import FakeDirectory, FakeWecomServer


@pytest.fixture()
def fake():
    d = FakeDirectory()
    d.users["hr.li"] = {"userid": "hr.li", "name": "李HR"}
    d.users["zhang.san"] = {"userid": "zhang.san", "name": "张三"}
    d.outsiders["o-abc"] = "wm-ext-abc"
    srv = FakeWecomServer(d).start()
    yield srv
    srv.stop()


def make_client(fake, **kw) -> WecomClient:
    d = fake.directory
    kw.setdefault("backoff_s", 0.01)
    return WecomClient(d.corp_id, d.secret, d.agent_id, base_url=fake.base_url, **kw)


def test_member_code_gives_userid(fake):
    c = make_client(fake)
    ident = c.get_identity(fake.issue_code(userid="zhang.san"))
    assert ident.userid == "zhang.san" and ident.kind == "member"
    assert c.get_user("zhang.san")["name"] == "张三"


def test_external_code_gives_openid_and_external_userid(fake):
    ident = make_client(fake).get_identity(fake.issue_code(openid="o-abc"))
    assert ident.userid is None
    assert (ident.openid, ident.external_userid) == ("o-abc", "wm-ext-abc")
    assert ident.ref() == "external_userid:wm-ext-abc"


def test_reused_code_is_40029(fake):
    c = make_client(fake)
    code = fake.issue_code(userid="zhang.san")
    c.get_identity(code)
    with pytest.raises(WecomError) as e:
        c.get_identity(code)
    assert e.value.errcode == 40029


def test_wrong_secret_is_refused(fake):
    c = WecomClient(fake.directory.corp_id, "nope", fake.directory.agent_id, base_url=fake.base_url)
    with pytest.raises(WecomError) as e:
        c.get_user("hr.li")
    assert e.value.errcode == 40001
    assert "nope" not in repr(c)


def test_token_is_cached(fake):
    c = make_client(fake)
    for _ in range(3):
        c.get_user("hr.li")
    assert fake.calls.count("/cgi-bin/gettoken") == 1


def test_token_expired_mid_day_is_refreshed_transparently(fake):
    c = make_client(fake)
    c.get_user("hr.li")
    fake.expire_tokens()  # WeCom now answers 42001 to the cached token
    assert c.get_user("hr.li")["userid"] == "hr.li"
    assert fake.calls.count("/cgi-bin/gettoken") == 2


def test_token_refreshed_before_expiry_by_clock(fake):
    now = [1_000_000.0]
    c = make_client(fake, clock=lambda: now[0], refresh_margin_s=300)
    c.get_user("hr.li")
    now[0] += 7200 - 299  # inside the refresh margin: fetch before WeCom says expired
    c.get_user("hr.li")
    assert fake.calls.count("/cgi-bin/gettoken") == 2
    assert "42001" not in str(fake.calls)


def test_rate_limit_backs_off_then_succeeds(fake):
    sleeps: list[float] = []
    c = make_client(fake, sleep=sleeps.append, backoff_s=0.5)
    c.get_user("hr.li")
    fake.rate_limit(2)
    assert c.send_text(["hr.li"], "hello")["errcode"] == 0
    assert sleeps == [0.5, 1.0]


def test_rate_limit_that_persists_raises(fake):
    c = make_client(fake, sleep=lambda s: None)
    c.get_user("hr.li")
    fake.rate_limit(10)
    with pytest.raises(WecomRateLimited):
        c.send_text(["hr.li"], "hello")


def test_server_down_is_unreachable_then_recovers(fake):
    c = make_client(fake, timeout=2)
    c.get_user("hr.li")
    fake.go_down()
    with pytest.raises(WecomUnreachable):
        c.send_markdown(["hr.li"], "**x**")
    fake.come_back()
    assert c.send_markdown(["hr.li"], "**x**")["errcode"] == 0
    assert fake.messages[-1]["markdown"]["content"] == "**x**"


def test_textcard_reaches_recipients(fake):
    c = make_client(fake)
    r = c.send_textcard(["hr.li", "ghost"], "求助", "终端 T1", "https://example.invalid/x")
    assert r["invaliduser"] == "ghost"
    [m] = fake.messages_to("hr.li")
    assert m["msgtype"] == "textcard" and m["textcard"]["title"] == "求助"
    assert m["agentid"] == fake.directory.agent_id


def test_duplicate_check_drops_identical_message(fake):
    c = make_client(fake)
    c.send_text(["hr.li"], "same", dedup_s=60)
    c.send_text(["hr.li"], "same", dedup_s=60)
    assert len(fake.messages) == 1


def test_phone_side_sso_login_redirects_with_code_and_state(fake):
    d = fake.directory
    r = requests.get(
        fake.root_url + "/wwlogin/sso/login",
        params={"login_type": "CorpApp", "appid": d.corp_id, "agentid": d.agent_id,
                "redirect_uri": "https://kiosk.example/wecom/callback", "state": "abc", "as": "zhang.san"},
        allow_redirects=False, timeout=5,
    )
    assert r.status_code == 302
    loc = r.headers["Location"]
    assert loc.startswith("https://kiosk.example/wecom/callback?code=") and loc.endswith("&state=abc")
