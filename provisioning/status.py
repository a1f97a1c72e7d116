"""`kiosk-provision status`: what this terminal is, what it holds and how far behind its
delivery to HR is, in one screen (or --json for scripts and monitoring).

Shows counts, ages and versions only: never a candidate's name, a transcript or a secret.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from device.config import Settings, effective_settings, overridden_keys, pushed_config
from provisioning import version_string
from provisioning.cli import Context, ExitCode

SERVICES = ("interview-kiosk.service", "interview-sync.service", "interview-retention.timer")
PACKAGES = ("vosk", "mediapipe", "PySide6-Essentials", "paho-mqtt", "sqlcipher3-binary", "wechatpy")


def _fmt_age(seconds: float | None, lang: str) -> str:
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} " + ("天" if lang == "zh" else "days")


def _fmt_time(ts: float | None) -> str:
    if ts is None:
        return "—"
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _dir_size(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:
            continue
    return total


def service_states() -> dict[str, str]:
    """systemctl is-active for our units; empty when systemd is not running (a laptop, CI)."""
    if not shutil.which("systemctl") or not Path("/run/systemd/system").is_dir():
        return {}
    out: dict[str, str] = {}
    for unit in SERVICES:
        try:
            proc = subprocess.run(["systemctl", "is-active", unit], capture_output=True,
                                  text=True, timeout=10)
            out[unit] = proc.stdout.strip() or "unknown"
        except (OSError, subprocess.SubprocessError):
            out[unit] = "unknown"
    return out


def certificate_info(settings: Settings) -> dict[str, Any] | None:
    mqtt = settings.sync.mqtt if settings.sync else None
    if mqtt is None or mqtt.cert_file is None:
        return None
    try:
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(Path(mqtt.cert_file).read_bytes())
    except (OSError, ValueError) as e:
        return {"file": str(mqtt.cert_file), "error": str(e)}
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return {
        "file": str(mqtt.cert_file),
        "subject": str(cn[0].value) if cn else "",
        "not_after": cert.not_valid_after_utc.isoformat(),
        "days_left": round((cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds() / 86400, 1),
    }


def gather(ctx: Context) -> dict[str, Any]:
    """Everything `status` shows, as plain data."""
    from device.keys import SecretBox

    settings = ctx.settings()
    store = ctx.store()
    now = time.time()
    data_dir = Path(settings.paths.data_dir)
    with store.lock:
        db = store.db
        last_delivered = db.execute("SELECT max(delivered) FROM outbox").fetchone()[0]
        sessions, last_started = db.execute("SELECT count(*), max(started) FROM sessions").fetchone()
        unfinished = db.execute("SELECT count(*) FROM sessions WHERE ended IS NULL").fetchone()[0]
        audit_count = db.execute("SELECT count(*) FROM audit").fetchone()[0]
    outbox = store.outbox_stats(now)
    from sync.outbox import RECEIPTS_SEEN_KV, parked_clips, unreceipted_stats

    clips_parked = parked_clips(store)
    # Handed to the broker but not yet confirmed stored by HR's connector (receipt); only
    # counted once the connector sends receipts at all.
    receipts = {**unreceipted_stats(store, now), "required": store.kv_get(RECEIPTS_SEEN_KV) is not None}
    bank: dict[str, Any] | None = None
    cached = store.cache_get("questionbank", "current")
    if cached is not None:
        version, payload = cached
        bank = {"version": version, "jobs": len(payload.get("jobs", [])),
                "questions": len(payload.get("questions", []))}
    pushed = None
    row = pushed_config(store)
    if row is not None:
        # Would the device use it? A cached config the schema no longer accepts is ignored.
        _, applied = effective_settings(store, settings)
        pushed = {"version": row[0], "keys": overridden_keys(row[1]), "applied": applied is not None}
    versions = {"interview-kiosk": version_string(), "python": platform.python_version(),
                "schema": store.schema_version}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    wecom = None
    if settings.wecom is not None:
        box = SecretBox(settings.paths.key_dir, ctx.master_key())
        wecom = {"corp_id": settings.wecom.corp_id, "agent_id": settings.wecom.agent_id,
                 "secret_stored": box.exists("wecom_secret")}
    mqtt = settings.sync.mqtt if settings.sync else None
    usage = shutil.disk_usage(data_dir)
    return {
        "device": {"id": settings.device.id, "tenant": settings.device.tenant,
                   "company": settings.device.company_name, "site": settings.device.site_name,
                   "location": settings.device.site_location},
        "config": str(ctx.config_path),
        "data_dir": str(data_dir),
        "versions": versions,
        "enrolled": mqtt is not None,
        "broker": f"{mqtt.host}:{mqtt.port}" if mqtt else None,
        "https": settings.sync.https.base_url if settings.sync and settings.sync.https else None,
        "certificate": certificate_info(settings),
        "wecom": wecom,
        "models": {lang: {"path": str(p), "present": Path(p).is_dir()}
                   for lang, p in settings.models.vosk.items()},
        "pocketsphinx_en": settings.models.pocketsphinx_en,
        "bank": bank,
        "pushed_config": pushed,
        "outbox": outbox,
        "receipts": receipts,
        # Answer clips HR refused for good (a different clip under the same id): kept, retried daily.
        "clips_parked": clips_parked,
        "last_delivered": last_delivered,
        "last_delivered_age_s": None if last_delivered is None else now - last_delivered,
        "sessions": sessions,
        "unfinished_sessions": unfinished,
        "last_interview": last_started,
        "audit_entries": audit_count,
        "disk": {"free_bytes": usage.free, "total_bytes": usage.total,
                 "data_bytes": _dir_size(data_dir)},
        "services": service_states(),
    }


def run_status(ctx: Context, args: argparse.Namespace) -> int:
    info = gather(ctx)
    if ctx.json_output:
        ctx.emit_json(info)
        return ExitCode.OK
    tr = ctx.tr
    lang = ctx.lang
    t = Table(title=tr("终端状态", "Terminal status"), show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    d = info["device"]
    t.add_row(tr("设备", "Device"), escape(f"{d['id']}  ({tr('租户', 'tenant')} {d['tenant']})"))
    if d["company"] or d["site"]:
        t.add_row(tr("地点", "Site"), escape(" · ".join(x for x in (d["company"], d["site"], d["location"]) if x)))
    t.add_row(tr("配置", "Config"), escape(info["config"]))
    t.add_row(tr("数据目录", "Data directory"), escape(info["data_dir"]))
    v = info["versions"]
    t.add_row(tr("版本", "Versions"), ", ".join(f"{k} {val}" for k, val in v.items()))
    if info["enrolled"]:
        cert = info["certificate"] or {}
        cert_text = ""
        if "days_left" in cert:
            cert_text = tr("，证书剩余 {d} 天", ", certificate valid {d} more days", d=cert["days_left"])
        elif "error" in cert:
            cert_text = tr("，证书无法读取", ", certificate unreadable")
        t.add_row(tr("注册", "Enrolment"), f"MQTT {escape(info['broker'])}{cert_text}")
    else:
        t.add_row(tr("注册", "Enrolment"), "[yellow]" + tr("未注册（kiosk-provision enrol）", "not enrolled (kiosk-provision enrol)") + "[/]")
    if info["wecom"]:
        w = info["wecom"]
        secret = tr("密钥已保存", "secret stored") if w["secret_stored"] else "[red]" + tr("缺少密钥", "secret missing") + "[/]"
        t.add_row(tr("企业微信", "WeCom"), f"{escape(w['corp_id'])} / {w['agent_id']}, {secret}")
    models = info["models"]
    model_text = ", ".join(f"{lang_}: {escape(Path(m['path']).name)}" + ("" if m["present"] else " [red]" + tr("缺失", "missing") + "[/]")
                           for lang_, m in models.items()) or tr("无 vosk 模型", "no vosk model")
    if info["pocketsphinx_en"]:
        model_text += tr("；英文备用 pocketsphinx", "; English fallback pocketsphinx")
    t.add_row(tr("语音模型", "Speech models"), model_text)
    b = info["bank"]
    t.add_row(tr("题库", "Question bank"), tr("版本 {v}，{j} 个岗位，{q} 道题", "version {v}, {j} jobs, {q} questions",
                                          v=b["version"], j=b["jobs"], q=b["questions"]) if b else "[yellow]" + tr("未导入", "none installed") + "[/]")
    pc = info["pushed_config"]
    if pc:
        keys = escape(", ".join(pc["keys"]))
        t.add_row(tr("HR 推送配置", "Pushed config"),
                  tr("版本 {v}，覆盖 {k}", "version {v}, overrides {k}", v=pc["version"], k=keys)
                  if pc["applied"] else "[red]" + tr("版本 {v} 无效，已忽略（见日志）",
                                                     "version {v} invalid, ignored (see the log)",
                                                     v=pc["version"]) + "[/]")
    else:
        t.add_row(tr("HR 推送配置", "Pushed config"), tr("无（只用配置文件）", "none (config file only)"))
    o = info["outbox"]
    behind = o["oldest_undelivered_age_s"]
    style = "red" if behind is not None and behind > 1800 else "green"
    if o["depth"]:
        t.add_row(tr("待发送", "Outbox"), f"[{style}]" + tr("{n} 条待发送，最早的已等待 {age}", "{n} undelivered, oldest waiting {age}",
                                                          n=o["depth"], age=_fmt_age(behind, lang)) + "[/]"
                  + f"  ({', '.join(f'{k} {n}' for k, n in o['by_kind'].items())})")
    else:
        t.add_row(tr("待发送", "Outbox"), "[green]" + tr("全部已发送（{n} 条）", "all delivered ({n})", n=o["delivered"]) + "[/]")
    r = info["receipts"]
    if r["unreceipted"]:
        age = r["oldest_unreceipted_age_s"]
        style = "red" if age is not None and age > 1800 else "yellow"
        t.add_row(tr("待 HR 确认", "Awaiting HR receipt"), f"[{style}]" + tr(
            "{n} 条已交给服务器、HR 尚未确认收到，最早的 {age}",
            "{n} handed to the broker, not yet confirmed stored by HR, oldest {age}",
            n=r["unreceipted"], age=_fmt_age(age, lang)) + "[/]")
    elif not r["required"]:
        t.add_row(tr("HR 确认", "HR receipts"), tr("HR 连接器尚未发送过确认（服务器确认即算已发送）",
                                               "none seen yet from HR's connector (broker's ack counts as delivered)"))
    for c in info["clips_parked"]:
        t.add_row(tr("搁置的录像", "Parked clip"), "[red]" + escape(f"{c['media_id']} ({c['kind']}, ")
                  + tr("面试 {s})：冲突，HR 已存有同一编号的另一段录像；每天重试",
                       "session {s}): conflict, HR already stores a different clip with this id; retried daily",
                       s=escape(str(c["session_id"]))) + "[/]")
    t.add_row(tr("上次同步", "Last sync"), _fmt_time(info["last_delivered"]) + (
        f" ({_fmt_age(info['last_delivered_age_s'], lang)} {tr('前', 'ago')})" if info["last_delivered"] else ""))
    t.add_row(tr("面试", "Interviews"), tr("共 {n} 场，上次 {last}", "{n} on the device, last {last}",
                                        n=info["sessions"], last=_fmt_time(info["last_interview"]))
              + (tr("，{u} 场未结束", ", {u} unfinished", u=info["unfinished_sessions"]) if info["unfinished_sessions"] else ""))
    disk = info["disk"]
    t.add_row(tr("磁盘", "Disk"), tr("剩余 {free:.1f} GB / 共 {total:.1f} GB，数据 {data:.1f} MB",
                                   "{free:.1f} GB free of {total:.1f} GB, data {data:.1f} MB",
                                   free=disk["free_bytes"] / 1e9, total=disk["total_bytes"] / 1e9,
                                   data=disk["data_bytes"] / 1e6))
    t.add_row(tr("审计日志", "Audit log"), tr("{n} 条（kiosk-provision audit verify 校验）",
                                           "{n} entries (check with kiosk-provision audit verify)",
                                           n=info["audit_entries"]))
    for unit, state in info["services"].items():
        colour = "green" if state == "active" else "yellow"
        t.add_row(unit, f"[{colour}]{state}[/]")
    ctx.console.print(t)
    return ExitCode.OK
