"""WeCom benchmark (``python -m benchmarks.wecom``): the real callback server (HTTPS) and
notifier against the local fake WeCom server, on loopback. Prints one JSON line per figure;
everything lives in a temp directory.

signin_p50_ms/p99   phone opens the redirect URI -> page answered -> kiosk has taken the row
                    (state check, code exchange over HTTP, roster match, audit, store commit)
notify_per_s        notify rows the notifier turns into delivered WeCom messages per second
invitation_frame_ms decode an invitation QR from a 1280x720 camera frame and verify it
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Sign-in: the issue wants the kiosk to react within 0.5 s. Invitation frames: the kiosk scans
# about twice a second in a worker thread, so one frame must take well under 500 ms.
TARGETS = {"signin_p99_ms": ("<=", 500.0), "invitation_frame_ms": ("<=", 250.0)}


def _emit(metric: str, value: float, unit: str, **extra) -> None:
    line = {"bench": "wecom", "metric": metric, "value": round(value, 2), "unit": unit, **extra}
    if metric in TARGETS:
        op, t = TARGETS[metric]
        line["target"] = f"{op} {t:g}"
        line["ok"] = value >= t if op == ">=" else value <= t
    print(json.dumps(line), flush=True)


def run(n_signin: int, n_notify: int) -> None:
    import cv2
    import httpx
    import numpy as np
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from device import signin
    from device.audit import AuditLog
    from device.config import default_config_text, load_settings, settings_from_dict
    from device.keys import create_master_key, derive_key, load_master_key
    from device.qr import read_qr
    from device.roster import install_roster, roster_from_dict
    from device.store import Store
    from sync.signing import public_key_pem
    from sync.wecom.callback import SignInProcessor, server_for_device
    from sync.wecom.client import WecomClient
    from sync.wecom.fakeserver import FakeDirectory, FakeWecomServer
    from sync.wecom.invite import make_invitation, qr_image
    from sync.wecom.notifier import Notifier

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "var"
        cfg = tmp / "config.toml"
        cfg.write_text(default_config_text(data, "bench-kiosk"), encoding="utf-8")
        create_master_key(data / "keys")
        base = load_settings(cfg).model_dump(mode="json", exclude_none=True)
        d = FakeDirectory()
        d.users.update({"hr.on.call": {"userid": "hr.on.call", "name": "HR"}})
        fake = FakeWecomServer(d).start()
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        base["wecom"] = {"corp_id": d.corp_id, "agent_id": d.agent_id, "api_base_url": fake.base_url,
                         "redirect_uri": f"http://127.0.0.1:{port}/wecom/callback",
                         "callback_host": "127.0.0.1", "callback_port": port, "hr_oncall": ["hr.on.call"]}
        settings = settings_from_dict(base, path=cfg)
        store = Store.open_from_settings(settings)
        now = time.time()
        from datetime import UTC, datetime, timedelta

        t = datetime.fromtimestamp(now, tz=UTC)
        entries = [{"entry_id": f"E{i}", "name": "测试", "wecom_userid": f"u{i}", "job_id": "j",
                    "device_id": settings.device.id, "slot_start": (t - timedelta(minutes=10)).isoformat(),
                    "slot_end": (t + timedelta(minutes=50)).isoformat()} for i in range(n_signin)]
        install_roster(store, roster_from_dict({"version": 1, "date": t.date().isoformat(), "entries": entries}))
        audit = AuditLog(store, derive_key(load_master_key(settings.paths.key_dir), "audit"))
        client = WecomClient(d.corp_id, d.secret, d.agent_id, base_url=fake.base_url)
        server = server_for_device(SignInProcessor(store, settings, client, audit), settings.wecom).start()
        kiosk = Store.open_from_settings(settings)  # the kiosk process has its own connection
        phone = httpx.Client(timeout=10)
        times = []
        for i in range(n_signin):
            qr = signin.new_qr_state(store, settings, time.time())
            code = fake.issue_code(userid=f"u{i}")
            t0 = time.perf_counter()
            phone.get(server.url, params={"code": code, "state": qr.nonce})
            row = signin.take_verification(kiosk, settings.device.id)
            times.append((time.perf_counter() - t0) * 1000)
            assert row is not None and row.ok, row
        server.stop()
        times.sort()
        _emit("signin_p50_ms", statistics.median(times), "ms", n=n_signin)
        _emit("signin_p99_ms", times[min(len(times) - 1, int(len(times) * 0.99))], "ms", n=n_signin)

        notifier = Notifier(store, settings, client)
        for i in range(n_notify):
            store.enqueue("notify", "t", {"type": "finished", "ts": time.time(), "session_id": f"s{i}",
                                          "candidate_name": "王小明", "total": 70, "recommendation": "yes"},
                          session_id=f"s{i}")
        t0 = time.perf_counter()
        sent = notifier.run_once()
        dt = time.perf_counter() - t0
        assert sent == n_notify and len(fake.messages) == n_notify
        _emit("notify_per_s", n_notify / dt, "msg/s", n=n_notify)

        from skimage import data as skdata

        key = Ed25519PrivateKey.generate()
        store.cache_put("pubkey", "downlink", 1, {"pem": public_key_pem(key.public_key()).decode()})
        text = make_invitation(key, "E0", not_before=now - 60, not_after=now + 3600, device=settings.device.id)
        code_img = cv2.cvtColor(qr_image(text, box_size=6), cv2.COLOR_GRAY2BGR)
        frame = cv2.resize(cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR), (1280, 720))
        card = np.full((560, 340, 3), 255, np.uint8)
        card[130:430, 20:320] = cv2.resize(code_img, (300, 300), interpolation=cv2.INTER_AREA)
        frame[80:640, 500:840] = card
        ft = []
        for _ in range(20):
            t0 = time.perf_counter()
            seen = read_qr(frame, signin.INVITATION_PREFIX)
            result = signin.verify_invitation(store, settings, seen, time.time())
            ft.append((time.perf_counter() - t0) * 1000)
            assert getattr(result, "entry_id", None) == "E0", result
        _emit("invitation_frame_ms", statistics.median(ft), "ms", n=len(ft))
        phone.close()
        kiosk.close()
        store.close()
        fake.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.wecom", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--signins", type=int, default=100)
    p.add_argument("--notify", type=int, default=200)
    a = p.parse_args(argv)
    run(a.signins, a.notify)
    return 0


if __name__ == "__main__":
    sys.exit(main())
