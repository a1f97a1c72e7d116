"""`interview-kiosk --demo --headless`: the whole loop as a person runs it, sign-in through
WeCom (fake WeCom + the sync service's WeCom half + a phone that scans the screen), the
interview, the report, HR's WeCom messages, and no processes left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from device.config import load_settings
from device.store import Store
from kiosk.demo import DEMO_ANSWERS, DEMO_CORP_ID, DEMO_HR, WecomSide, examples_dir, read_qr

REPO = Path(__file__).resolve().parents[2]


def processes_mentioning(text: str) -> list[str]:
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if text in cmd and p.pid != os.getpid():
            found.append(f"{p.pid}: {cmd}")
    return found


@pytest.mark.timeout(480)
def test_demo_signs_in_through_wecom_and_hr_gets_the_result(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    run = subprocess.run([sys.executable, "-m", "kiosk", "--demo", "--headless", "--out", str(out)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=450)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "signed in by WeCom" in run.stdout and "interview code 246810 instead" not in run.stdout

    # The phone scanned the QR code off the idle screenshot: it is WeCom's QR-login URL for
    # this device's corp and callback.
    summary = json.loads((out / "demo-summary.json").read_text(encoding="utf-8"))
    screens = sorted((out / "screens").glob("*.png"))
    assert screens[0].name == "01-idle.png" and summary["signin"]["qr_read_from"] == "screen"
    url = read_qr(screens[0])
    settings = load_settings(out / "device" / "config.toml")
    assert url and url.startswith("https://login.work.weixin.qq.com/") and f"appid={DEMO_CORP_ID}" in url
    assert f"127.0.0.1%3A{settings.wecom.callback_port}" in url
    assert not any("idle-code" in p.name for p in screens)   # nobody typed the code
    assert {"welcome", "answer", "done"} <= {p.stem.split("-", 1)[1] for p in screens}

    # The report is the booked candidate's, and the session says how they signed in.
    record = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert record["candidate"]["ref"] == "R-20261123-001" and record["end_reason"] == "completed"
    assert (out / "report.html").stat().st_size > 10_000
    store = Store.open_from_settings(settings)
    try:
        [session] = list(store.db.query("SELECT data FROM sessions WHERE id = ?", [record["session_id"]]))
        data = json.loads(session["data"])
        [ver] = list(store.db.query("SELECT method, status, candidate_ref FROM verifications WHERE id = ?",
                                    [data["verification_id"]]))
        transcripts = [r["transcript"] for r in store.db.query(
            "SELECT transcript FROM answers WHERE session_id = ?", [record["session_id"]]) if r["transcript"]]
    finally:
        store.close()
    assert data["method"] == "wecom"
    assert dict(ver) == {"method": "wecom", "status": "ok", "candidate_ref": "R-20261123-001"}
    assert summary["signin"]["method"] == "wecom"

    # HR on call got the start and the result on WeCom, with the masked name and no answers.
    msgs = json.loads((out / "wecom-messages.json").read_text(encoding="utf-8"))
    assert msgs and all(m["touser"] == DEMO_HR for m in msgs)
    finished = [m for m in msgs if "Interview finished" in json.dumps(m, ensure_ascii=False)]
    assert len(finished) == 1
    assert any("Interview started" in json.dumps(m, ensure_ascii=False) for m in msgs)
    assert transcripts, "the answers were transcribed"
    text = json.dumps(msgs, ensure_ascii=False)
    assert "Jordan" not in text
    for t in transcripts + list(DEMO_ANSWERS):
        words = t.split()
        for i in range(0, max(1, len(words) - 5), 5):   # no six-word run of any answer
            assert " ".join(words[i:i + 6]) not in text

    # No WeCom service, fake or phone outlived the demo.
    assert processes_mentioning(str(out)) == []


def test_wecom_side_that_cannot_start_says_why(tmp_path):
    """The demo's fallback trigger: a WeCom service that dies at start is reported, not waited on."""
    cfg = tmp_path / "missing.toml"
    side = WecomSide(cfg, examples_dir() / "wecom_directory.json", tmp_path / "wecom.log").start()
    try:
        assert side.ready.wait(120)
        assert not side.ok and side.fake_root is None
        assert "before its sign-in callback listened" in side.failed and str(tmp_path / "wecom.log") in side.failed
        assert str(cfg) in (tmp_path / "wecom.log").read_text()
    finally:
        side.stop()
    assert processes_mentioning(str(tmp_path)) == []
