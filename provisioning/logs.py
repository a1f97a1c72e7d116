"""`kiosk-provision export-logs`: a support bundle a technician can send without sending
anyone's personal data.

Collects status, the audit trail, the config and the services' journal, then redacts:
every candidate name, WeCom identity, interview code and transcript the device knows of,
the WeCom secret, and anything shaped like a phone number, e-mail, ID number or token.
The bundle must never contain a secret, a name or a transcript; tests check that.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from provisioning.cli import Context, ExitCode

UNITS = ("interview-kiosk.service", "interview-sync.service", "interview-retention.service")
MIN_FRAGMENT = 4  # shorter transcript pieces ("yes", "我") are too common to mean anything

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), "[private key]"),
    (re.compile(r"(?i)\b(corpsecret|secret|access_token|token|password|passwd|authorization|code|state)"
                r"(\s*[=:]\s*|\"\s*:\s*\")(bearer\s+)?[^\s&\"',;]+"), r"\1\2[redacted]"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"), "Bearer [redacted]"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[email]"),
    (re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)"), "[id number]"),
    (re.compile(r"(?<!\d)(\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)"), "[phone]"),
]


class Redactor:
    """Replaces known personal strings and secret-shaped text; counts what it removed."""

    def __init__(self, sensitive: Iterable[str]):
        words = sorted({s.strip() for s in sensitive if s and len(s.strip()) >= 2}, key=len, reverse=True)
        self._known = re.compile("|".join(re.escape(w) for w in words)) if words else None
        self.count = 0

    def __call__(self, text: str) -> str:
        if self._known is not None:
            text, n = self._known.subn("[redacted]", text)
            self.count += n
        for pattern, repl in _PATTERNS:
            text, n = pattern.subn(repl, text)
            self.count += n
        return text


def _fragments(text: str) -> list[str]:
    """A transcript and its sentence-sized pieces: a log line may quote part of it."""
    parts = [text]
    parts += [p for p in re.split(r"[，。！？、；：,.!?;:\n]+", text) if len(p.strip()) >= MIN_FRAGMENT]
    return parts


def _names_in(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, str) and ("name" in k.lower() or k in ("candidate_ref", "userid", "openid",
                                                                      "external_userid", "interview_code")):
                out.append(v)
            else:
                _names_in(v, out)
    elif isinstance(value, list):
        for v in value:
            _names_in(v, out)


def sensitive_strings(ctx: Context) -> list[str]:
    """Everything personal or secret this device holds, to scrub from the logs."""
    from device.keys import SecretBox, SecretMissing, SecretTampered

    store = ctx.store()
    found: list[str] = []
    roster = store.cache_get("roster", "current")
    if roster is not None:
        for entry in roster[1].get("entries", []):
            for key in ("name", "wecom_userid", "external_userid", "openid", "interview_code"):
                if entry.get(key):
                    found.append(str(entry[key]))
    with store.lock:
        for (transcript,) in store.db.execute("SELECT transcript FROM answers WHERE transcript IS NOT NULL"):
            found += _fragments(transcript)
        for ref, data in store.db.execute("SELECT candidate_ref, data FROM sessions"):
            if ref:
                found.append(ref)
            try:
                _names_in(json.loads(data or "{}"), found)
            except ValueError:
                continue
        for (entry,) in store.db.execute("SELECT roster_entry FROM verifications WHERE roster_entry IS NOT NULL"):
            try:
                _names_in(json.loads(entry), found)
            except ValueError:
                continue
    settings = ctx.settings()
    box = SecretBox(settings.paths.key_dir, ctx.master_key())
    for name in ("wecom_secret", "mqtt_password"):
        try:
            found.append(box.open(name).decode("utf-8", "replace"))
        except (SecretMissing, SecretTampered):
            continue
    return found


def journal(units: Iterable[str], since: str) -> str | None:
    if not shutil.which("journalctl") or not Path("/run/systemd/system").is_dir():
        return None
    cmd = ["journalctl", "--no-pager", "-o", "short-iso", "--since", since]
    for u in units:
        cmd += ["-u", u]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"(journalctl failed: {e})\n"


def _add(tar: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode("utf-8")
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def run_export_logs(ctx: Context, args: argparse.Namespace) -> int:
    from provisioning.status import gather

    settings = ctx.settings()
    redact = Redactor(sensitive_strings(ctx))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path.cwd() / f"kiosk-logs-{settings.device.id}-{stamp}.tar.gz"
    files: dict[str, str] = {}
    files["status.json"] = json.dumps(gather(ctx), ensure_ascii=False, indent=1, default=str)
    audit_lines = [json.dumps({"seq": e.seq, "ts": e.ts, "actor": e.actor, "action": e.action,
                               "detail": e.detail}, ensure_ascii=False)
                   for e in ctx.audit().entries()]
    files["audit.jsonl"] = "\n".join(audit_lines) + "\n"
    files["audit-verify.json"] = json.dumps(dataclasses.asdict(ctx.audit().verify()))
    files["config.toml"] = ctx.config_path.read_text(encoding="utf-8")
    text = journal(UNITS, args.since)
    if text is not None:
        files["journal.txt"] = text
    for extra in args.include:
        p = Path(extra)
        try:
            files[f"included/{p.name}"] = p.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            ctx.warn("无法读取 {p}：{e}", "cannot read {p}: {e}", p=p, e=e.strerror)
    redacted = {name: redact(body) for name, body in files.items()}
    manifest = {"device_id": settings.device.id, "created": stamp, "files": sorted(redacted),
                "redactions": redact.count, "journal": "journal.txt" in redacted}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        _add(tar, "manifest.json", json.dumps(manifest, indent=1))
        for name, body in redacted.items():
            _add(tar, name, body)
    out.chmod(0o600)
    ctx.record("logs.export", {"file": out.name, "files": len(redacted), "redactions": redact.count})
    if ctx.json_output:
        ctx.emit_json({"ok": True, "file": str(out), **manifest})
    else:
        ctx.say("[green]✓[/] 支持包已写入 {out}（{n} 个文件，已去除 {r} 处个人信息或密钥）",
                "[green]✓[/] support bundle written to {out} ({n} files, {r} personal or secret items removed)",
                out=out, n=len(redacted), r=redact.count)
        if text is None:
            ctx.say("（本机未运行 systemd，未包含系统日志）", "(systemd is not running here: no journal included)")
    return ExitCode.OK
