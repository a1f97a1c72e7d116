"""`kiosk-provision export-logs`: the support bundle carries status, audit and logs but no
candidate name, WeCom identity, interview code, transcript or secret."""

from __future__ import annotations

import json
import tarfile
import time
from pathlib import Path

from tests.provisioning.conftest import Device, Runner, as_json
from tests.provisioning.test_cli import OK, open_store

NAME = "欧阳娜娜"
USERID = "ouyang_nn_0815"
CODE = "QX7K2M"
TRANSCRIPT = "我曾经负责华东区的大客户渠道拓展，三个月内新增了二十家经销商"
SECRET = "wecom-app-secret-Zq81kd"


def _seed_personal_data(kp: Runner, device: Device) -> None:
    assert kp("wecom", "set-secret", input=SECRET + "\n").returncode == OK
    now = time.time()
    with open_store(device) as store:
        store.cache_put("roster", "current", 1, {"version": 1, "entries": [
            {"entry_id": "e1", "name": NAME, "wecom_userid": USERID, "interview_code": CODE,
             "job_id": "sales_rep", "device_id": "kiosk-prov-01"}]})
        with store.transaction():
            store.db["sessions"].insert({"id": "s-1", "job_id": "sales_rep", "candidate_ref": "e1",
                                         "state": "done", "language": "zh", "started": now,
                                         "data": json.dumps({"candidate_name": NAME})})
            store.db["answers"].insert({"id": "a-1", "session_id": "s-1", "question_id": "q1",
                                        "idx": 0, "attempt": 1, "transcript": TRANSCRIPT})


def test_export_redacts_everything_personal_and_secret(kp: Runner, device: Device, tmp_path: Path) -> None:
    _seed_personal_data(kp, device)
    leaky = tmp_path / "kiosk.log"
    leaky.write_text(
        f"07:01 INFO session s-1 started for {NAME} ({USERID}) code={CODE}\n"
        f"07:03 DEBUG partial transcript: 三个月内新增了二十家经销商\n"
        f"07:04 DEBUG wecom gettoken corpsecret={SECRET}\n"
        f"07:05 WARNING callback from 13812345678 / nana@example.com id 11010519491231002X\n"
        "07:06 INFO outbox depth 3\n", encoding="utf-8")
    out = tmp_path / "support.tar.gz"
    proc = kp("export-logs", "--out", str(out), "--include", str(leaky), "--json")
    assert proc.returncode == OK, proc.stderr
    manifest = as_json(proc)
    assert manifest["redactions"] >= 6
    with tarfile.open(out) as tar:
        names = tar.getnames()
        blob = "\n".join(tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile())
    assert {"manifest.json", "status.json", "audit.jsonl", "config.toml", "included/kiosk.log"} <= set(names)
    for personal in (NAME, USERID, CODE, TRANSCRIPT, "三个月内新增了二十家经销商", SECRET,
                     "13812345678", "nana@example.com", "11010519491231002X"):
        assert personal not in blob, personal
    assert "outbox depth 3" in blob  # the useful parts survive
    assert "wecom.set_secret" in blob  # the audit trail is there
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    with open_store(device) as store:
        assert store.db.execute("SELECT action FROM audit ORDER BY seq DESC").fetchone()[0] == "logs.export"
