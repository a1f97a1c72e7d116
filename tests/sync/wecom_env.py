"""Fixtures for the WeCom tests: the fake WeCom server, WeCom settings, a callback TLS cert.

Imported by tests/sync/test_wecom_*.py and tests/device/test_signin.py (not a conftest, so
the other sync tests don't pay for them).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sync.wecom.client import WecomClient
from sync.wecom.fakeserver import FakeDirectory, FakeWecomServer

HR_ONCALL = ["hr.li", "hr.wang"]


def free_port() -> int:
    """A port the OS says is free now (bind 0); the callback binds it right after."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_wecom() -> Iterator[FakeWecomServer]:
    d = FakeDirectory(corp_id="wwtestcorp42", secret="s3cret-for-tests-only", agent_id=1000007)
    for uid, name in [("hr.li", "李HR"), ("hr.wang", "王HR"), ("zhang.san", "张三"), ("li.si", "李四"),
                      ("wang.wu", "王五"), ("stranger", "路人")]:
        d.users[uid] = {"userid": uid, "name": name}
    d.outsiders["o-candidate-7"] = "wmEXT-candidate-7"
    d.outsiders["o-nobody"] = ""
    srv = FakeWecomServer(d).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the callback's HTTPS) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "callback.pem", tmp_path / "callback.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def wecom_settings(make_settings: Callable[[dict[str, Any]], Any], fake_wecom: FakeWecomServer, tls_files) -> Any:
    """Settings for the test device with WeCom pointed at the fake server, HTTPS callback."""
    port = free_port()
    d = fake_wecom.directory
    return make_settings(
        {
            "device": {"site_name": "上海总部 前台", "site_location": "A座 1楼"},
            "wecom": {
                "corp_id": d.corp_id,
                "agent_id": d.agent_id,
                "redirect_uri": f"https://127.0.0.1:{port}/wecom/callback",
                "callback_host": "127.0.0.1",
                "callback_port": port,
                "callback_cert_file": str(tls_files[0]),
                "callback_key_file": str(tls_files[1]),
                "api_base_url": fake_wecom.base_url,
                "hr_oncall": HR_ONCALL,
            },
        }
    )


def client_for(fake: FakeWecomServer, **kw: Any) -> WecomClient:
    d = fake.directory
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout", 3)
    return WecomClient(d.corp_id, d.secret, d.agent_id, base_url=fake.base_url, **kw)


# ---- a roster for today, around "now" -------------------------------------------------------

OTHER_DEVICE = "kiosk-other-02"
# A fixed "now" (10:00 in Shanghai) so "later today" is always today: pass it as the clock.
NOW = 1_795_399_200.0  # 2026-11-23T02:00:00Z


def roster_for(now: float, device_id: str, site: str = "上海总部 前台") -> Any:
    """Synthetic candidates: a member, an external contact, one booked elsewhere, one later today."""
    from datetime import UTC, datetime, timedelta

    from device.roster import roster_from_dict

    t = datetime.fromtimestamp(now, tz=UTC)

    def slot(start_min: int, length_min: int = 60) -> dict[str, str]:
        s = t + timedelta(minutes=start_min)
        return {"slot_start": s.isoformat(), "slot_end": (s + timedelta(minutes=length_min)).isoformat()}

    entries = [
        {"entry_id": "E-member", "name": "张三", "wecom_userid": "zhang.san", "interview_code": "246810",
         "job_id": "sales_rep", "device_id": device_id, **slot(-10)},
        {"entry_id": "E-external", "name": "王小明", "external_userid": "wmEXT-candidate-7",
         "openid": "o-candidate-7", "interview_code": "135790", "job_id": "sales_rep", "site": site, **slot(-5)},
        {"entry_id": "E-elsewhere", "name": "李四", "wecom_userid": "li.si", "interview_code": "112233",
         "job_id": "sales_rep", "device_id": OTHER_DEVICE, **slot(-10)},
    ]
    entries.append({"entry_id": "E-yesterday", "name": "王五", "wecom_userid": "wang.wu",
                    "job_id": "sales_rep", "device_id": device_id, **slot(-24 * 60)})
    entries.append({"entry_id": "E-later", "name": "赵六", "openid": "o-later", "interview_code": "778899",
                    "job_id": "sales_rep", "device_id": device_id, **slot(180)})
    return roster_from_dict({"version": 1, "date": t.date().isoformat(), "entries": entries})
