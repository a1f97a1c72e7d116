"""Relay mode end to end: the phone reaches the HR side's redirect URI, the relay forwards
code+state as a signed command through a real mosquitto, the device's sync daemon runs the
same checks and the kiosk picks up the verification."""

from __future__ import annotations

import threading
import time

import httpx

from device import signin
from device.roster import install_roster
from sync.daemon import SyncDaemon
from sync.wecom import store_secret
from sync.wecom.callback import relay_server
from sync.wecom.relay import command_publisher
from tests.sync import wecom_env
from tests.sync.conftest import wait_for
from tests.sync.wecom_env import free_port, roster_for

fake_wecom = wecom_env.fake_wecom


def test_relayed_signin_through_the_broker(make_settings, sync_settings, broker_on_port, hr_settings, hr_key,
                                           fake_wecom, store):
    broker = broker_on_port()
    broker.start()
    relay_port = free_port()
    d = fake_wecom.directory
    base = sync_settings()
    settings = make_settings({
        "device": {"site_name": "上海总部 前台"},
        "sync": base.sync.model_dump(mode="json", exclude_none=True),
        "wecom": {"corp_id": d.corp_id, "agent_id": d.agent_id, "api_base_url": fake_wecom.base_url,
                  "redirect_uri": f"http://127.0.0.1:{relay_port}/wecom/callback", "relay": True,
                  "hr_oncall": ["hr.li"]},
    })
    store_secret(settings, d.secret)
    install_roster(store, roster_for(time.time(), settings.device.id))
    stop = threading.Event()
    daemon = SyncDaemon(settings, store, stop=stop)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    relay = relay_server(command_publisher(hr_settings, hr_key), redirect_uri=settings.wecom.redirect_uri,
                         host="127.0.0.1", port=relay_port).start()
    try:
        wait_for(lambda: daemon.link is not None and daemon.link.connected.is_set(), 30, what="device MQTT connection")
        qr = signin.new_qr_state(store, settings, time.time())
        # The phone: scan at WeCom, then open the redirect, which is the HR side's relay.
        u = httpx.URL(qr.url)
        r = httpx.get(fake_wecom.root_url + u.path, params={**dict(u.params), "as": "openid:o-candidate-7"})
        assert r.status_code == 302 and r.headers["location"].startswith(relay.url)
        page = httpx.get(r.headers["location"], timeout=30)
        assert "请看终端屏幕" in page.text
        row = wait_for(lambda: signin.take_verification(store, settings.device.id), 30, what="relayed verification")
        assert row.ok and row.method == "relay" and row.roster_entry.entry_id == "E-external"
        # The device's callback port is not served in relay mode.
        assert not any(t.name == "wecom-callback" for t in threading.enumerate())
    finally:
        relay.stop()
        daemon.stop()
        runner.join(timeout=10)
