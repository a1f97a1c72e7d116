"""The broker as configured by sync.broker: TLS with client certificates required, the
certificate's CN is the identity, and ACLs keep each device to its own topics."""

from __future__ import annotations

import ssl
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import CallbackAPIVersion

from tests.sync.conftest import DEVICE, OTHER_DEVICE, TENANT, wait_for


def _client(broker, ca, pair=None, cid="t", manual=False):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, cid, protocol=mqtt.MQTTv5, manual_ack=manual)
    c.tls_set(ca_certs=str(ca), certfile=str(pair.cert) if pair else None,
              keyfile=str(pair.key) if pair else None)
    return c


def _connect_result(c, broker) -> str:
    """Connect and run the loop until CONNACK or failure; returns 'ok' or the error."""
    result: list[str] = []
    c.on_connect = lambda cl, u, f, rc, p: result.append("ok" if not rc.is_failure else str(rc))
    try:
        c.connect(broker.host, broker.port, keepalive=10)
    except (ssl.SSLError, OSError) as e:
        return f"refused: {type(e).__name__}"
    for _ in range(40):
        if c.loop(0.1) != mqtt.MQTT_ERR_SUCCESS:
            return "refused: connection lost"
        if result:
            break
    c.disconnect()
    return result[0] if result else "refused: no CONNACK"


def test_device_with_site_certificate_connects(broker, site_pki):
    assert _connect_result(_client(broker, site_pki.ca.cert, site_pki.device, DEVICE), broker) == "ok"


def test_device_without_certificate_is_refused(broker, site_pki):
    assert _connect_result(_client(broker, site_pki.ca.cert, None, DEVICE), broker).startswith("refused")


def test_certificate_from_another_ca_is_refused(broker, site_pki):
    res = _connect_result(_client(broker, site_pki.ca.cert, site_pki.rogue_device, DEVICE), broker)
    assert res.startswith("refused")


def test_acl_keeps_device_to_its_own_topics(broker, site_pki):
    got: list[tuple[str, bytes]] = []
    conn = _client(broker, site_pki.ca.cert, site_pki.connector, "conn")
    conn.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    subscribed = threading.Event()
    conn.on_subscribe = lambda *a: subscribed.set()
    conn.on_connect = lambda c, u, f, rc, p: c.subscribe(f"kiosk/v1/{TENANT}/+/up/#", qos=1)
    conn.connect(broker.host, broker.port)
    conn.loop_start()
    assert subscribed.wait(5)

    acks: dict[int, str] = {}
    dev = _client(broker, site_pki.ca.cert, site_pki.device, DEVICE)
    dev.on_publish = lambda c, u, mid, rc, p: acks.__setitem__(mid, str(rc))
    dev_msgs: list[str] = []
    dev.on_message = lambda c, u, m: dev_msgs.append(m.topic)
    dev.connect(broker.host, broker.port)
    dev.loop_start()
    wait_for(dev.is_connected, 5, what="device connected")
    own = dev.publish(f"kiosk/v1/{TENANT}/{DEVICE}/up/result", b'{"id":"a"}', qos=1).mid
    foreign = dev.publish(f"kiosk/v1/{TENANT}/{OTHER_DEVICE}/up/result", b'{"id":"b"}', qos=1).mid
    downlink = dev.publish(f"kiosk/v1/{TENANT}/{DEVICE}/down/roster", b"{}", qos=1).mid
    dev.subscribe(f"kiosk/v1/{TENANT}/{OTHER_DEVICE}/down/#", qos=1)
    wait_for(lambda: len(acks) == 3, 5, what="three PUBACKs")
    assert acks[own] == "Success"
    assert acks[foreign] == "Not authorized"      # cannot speak for another device
    assert acks[downlink] == "Not authorized"     # cannot forge HR's downlink
    # The connector may publish another device's downlink; this device must not receive it.
    conn.publish(f"kiosk/v1/{TENANT}/{OTHER_DEVICE}/down/roster", b"{}", qos=1).wait_for_publish(5)
    wait_for(lambda: got, 5, what="connector received the device's own result")
    import time

    time.sleep(0.5)
    assert [t for t, _ in got] == [f"kiosk/v1/{TENANT}/{DEVICE}/up/result"]
    assert dev_msgs == []
    for c in (dev, conn):
        c.disconnect()
        c.loop_stop()


@pytest.mark.parametrize("cn", [OTHER_DEVICE])
def test_connector_identity_reads_all_devices(broker, site_pki, cn):
    """The shared subscription the connectors use is allowed for the connector identity."""
    granted: list[str] = []
    conn = _client(broker, site_pki.ca.cert, site_pki.connector, "conn2")
    conn.on_subscribe = lambda c, u, mid, rcs, p: granted.extend(str(r) for r in rcs)
    conn.on_connect = lambda c, u, f, rc, p: c.subscribe("$share/hr/kiosk/v1/+/+/up/#", qos=1)
    got: list[str] = []
    conn.on_message = lambda c, u, m: got.append(m.topic)
    conn.connect(broker.host, broker.port)
    conn.loop_start()
    wait_for(lambda: granted, 5, what="SUBACK")
    assert granted == ["Granted QoS 1"]
    other = _client(broker, site_pki.ca.cert, site_pki.other, cn)
    other.connect(broker.host, broker.port)
    other.loop_start()
    wait_for(other.is_connected, 5)
    other.publish(f"kiosk/v1/{TENANT}/{cn}/up/event", b'{"id":"e1"}', qos=1).wait_for_publish(5)
    wait_for(lambda: got, 5, what="shared-subscription delivery")
    for c in (other, conn):
        c.disconnect()
        c.loop_stop()
