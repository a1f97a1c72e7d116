"""`kiosk-provision selftest`: everything a terminal needs to run an interview and deliver
it, checked end to end, each failure with a hint in the technician's language.

Hardware (camera, microphone, display, disk, clock) comes from hardware/selftest; this adds
keys and store, audit chain, speech models, question bank, broker and WeCom. It observes
only: it never stores a picture or recording, never publishes and never prints a secret.
"""

from __future__ import annotations

import argparse
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from device.config import Settings
from hardware.camera import camera_from_settings
from hardware.microphone import microphone_from_settings
from hardware.selftest import CheckResult, check_clock, check_disk, run_selftest
from provisioning.cli import CliError, Context, ExitCode


def _check(name: str, ok: bool, value: str, hint_zh: str = "", hint_en: str = "") -> CheckResult:
    return CheckResult(name, ok, value, "" if ok else hint_zh, "" if ok else hint_en)


def _guarded(name: str, fn: Callable[[], list[CheckResult]], hint_zh: str, hint_en: str) -> list[CheckResult]:
    """A check that raised is a failed check, not a crashed self-test."""
    try:
        return fn()
    except CliError as e:
        return [_check(name, False, str(e), hint_zh, hint_en)]
    except Exception as e:  # any library error becomes a line in the table
        return [_check(name, False, f"{type(e).__name__}: {e}", hint_zh, hint_en)]


# --- the device itself ---------------------------------------------------------------------


def check_store(ctx: Context) -> list[CheckResult]:
    store = ctx.store()
    version = store.schema_version
    report = ctx.audit().verify()
    return [
        _check("keys_store", True, f"kiosk.db schema {version}"),
        _check("audit_chain", bool(report.ok), f"{report.count} entries" + ("" if report.ok else f": {report.reason}"),
               "审计日志被篡改：请勿继续使用，联系技术支持（kiosk-provision audit show）。",
               "The audit log was tampered with: stop and call support (kiosk-provision audit show)."),
    ]


def check_models(settings: Settings, bank_languages: set[str]) -> list[CheckResult]:
    from provisioning.models import ModelError, load_check, missing_parts

    results = []
    for lang, path in sorted(settings.models.vosk.items()):
        name = f"model_{lang}"
        problems = missing_parts(Path(path)) if Path(path).is_dir() else ["directory missing"]
        if problems:
            results.append(_check(name, False, f"{path}: {', '.join(problems)}",
                                  "语音模型不完整：请重新安装（kiosk-provision models install）。",
                                  "The speech model is incomplete: reinstall it (kiosk-provision models install)."))
            continue
        try:
            seconds = load_check(Path(path))
            results.append(_check(name, True, f"vosk {Path(path).name}, loads in {seconds:.1f} s"))
        except ModelError as e:
            results.append(_check(name, False, str(e),
                                  "模型无法加载：文件可能损坏，请重新安装。",
                                  "The model does not load: the files may be damaged, reinstall it."))
    if "en" not in settings.models.vosk and settings.models.pocketsphinx_en:
        from pocketsphinx import Decoder

        t0 = time.monotonic()
        Decoder(loglevel="FATAL")
        results.append(_check("model_en", True, f"pocketsphinx (bundled), loads in {time.monotonic() - t0:.1f} s"))
    for lang in sorted(bank_languages):
        covered = lang in settings.models.vosk or (lang == "en" and settings.models.pocketsphinx_en)
        if not covered:
            results.append(_check(
                f"model_{lang}", False, f"a job answers in {lang}, no model for it",
                "题库里有用中文作答的岗位，但没有安装中文语音模型：kiosk-provision models install vosk-model-small-cn-0.22.zip",
                f"A job is answered in {lang} but no {lang} speech model is installed: "
                "kiosk-provision models install vosk-model-small-cn-0.22.zip"))
    return results


def check_bank(ctx: Context) -> tuple[list[CheckResult], set[str]]:
    from device.questions import current_bank

    bank = current_bank(ctx.store())
    if bank is None:
        return [_check("question_bank", False, "none installed",
                       "没有题库：kiosk-provision bank import 题库.xlsx（或等待 HR 下发）。",
                       "No question bank: kiosk-provision bank import BANK.xlsx (or wait for HR to push one).")], set()
    return ([_check("question_bank", True, f"version {bank.version}, {len(bank.jobs)} jobs")],
            {j.language for j in bank.jobs})


# --- the network --------------------------------------------------------------------------


def check_broker(settings: Settings, timeout: float = 10.0) -> list[CheckResult]:
    """Connect with the device certificate and subscribe to our own downlink topics: proves
    TLS, the certificate and the broker's ACL. A separate client id, clean start, no will,
    nothing published, so the sync daemon's session is left alone."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    mq = settings.sync.mqtt if settings.sync else None
    if mq is None:
        return [_check("broker", False, "not enrolled",
                       "未注册：kiosk-provision enrol 注册包。", "Not enrolled: kiosk-provision enrol BUNDLE.")]
    dev = settings.device
    done = threading.Event()
    outcome: dict[str, str | bool] = {"ok": False, "value": f"no answer from {mq.host}:{mq.port} in {timeout:.0f} s"}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, f"{dev.id}-selftest", protocol=mqtt.MQTTv5)
    if mq.tls:
        client.tls_set(ca_certs=str(mq.ca_file) if mq.ca_file else None,
                       certfile=str(mq.cert_file) if mq.cert_file else None,
                       keyfile=str(mq.key_file) if mq.key_file else None,
                       tls_version=ssl.PROTOCOL_TLS_CLIENT)
    topic = f"kiosk/v1/{dev.tenant}/{dev.id}/down/#"

    def on_connect(c, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            outcome["value"] = f"broker refused the connection: {reason_code}"
            done.set()
        else:
            c.subscribe(topic, qos=1)

    def on_subscribe(c, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            outcome["value"] = f"connected, but not allowed to read {topic}: {reason_codes[0]}"
        else:
            outcome.update(ok=True, value=f"{mq.host}:{mq.port}, TLS, certificate accepted")
        done.set()

    def on_disconnect(c, userdata, flags, reason_code, properties) -> None:
        if not done.is_set():
            outcome["value"] = f"disconnected: {reason_code}"
            done.set()

    client.on_connect, client.on_subscribe, client.on_disconnect = on_connect, on_subscribe, on_disconnect
    try:
        client.connect(mq.host, mq.port, keepalive=30, clean_start=True)
    except (OSError, ssl.SSLError, ValueError) as e:
        outcome["value"] = f"{mq.host}:{mq.port}: {type(e).__name__}: {e}"
        done.set()
    else:
        client.loop_start()
        done.wait(timeout)
        client.disconnect()
        client.loop_stop()
    return [_check("broker", bool(outcome["ok"]), str(outcome["value"]),
                   f"连不上消息服务器：检查网络、防火墙（端口 {mq.port}）和证书是否过期（kiosk-provision status）。",
                   f"Cannot reach the broker: check the network, the firewall (port {mq.port}) "
                   "and whether the certificate expired (kiosk-provision status).")]


def check_https(settings: Settings) -> list[CheckResult]:
    import httpx

    hs = settings.sync.https if settings.sync else None
    if hs is None:
        return []
    cert = (str(hs.cert_file), str(hs.key_file)) if hs.cert_file and hs.key_file else None
    try:
        with httpx.Client(timeout=min(hs.timeout_s, 10.0),
                          verify=str(hs.ca_file) if hs.ca_file else True, cert=cert) as client:
            r = client.get(hs.base_url)
        # Any answer below 500 proves TLS both ways; the base URL need not serve a page.
        ok = r.status_code < 500
        value = f"{hs.base_url}: HTTP {r.status_code}"
    except httpx.HTTPError as e:
        ok, value = False, f"{hs.base_url}: {type(e).__name__}: {e}"
    return [_check("https", ok, value,
                   "连不上 HR 接口（HTTPS）：检查网络和证书。",
                   "Cannot reach the HR connector over HTTPS: check the network and certificates.")]


def check_wecom(ctx: Context) -> list[CheckResult]:
    from device.keys import SecretBox, SecretMissing
    from sync.wecom.client import WecomError, client_from_settings

    settings = ctx.settings()
    if settings.wecom is None:
        return [_check("wecom", True, "not configured (sign-in by interview code only)")]
    try:
        secret = SecretBox(settings.paths.key_dir, ctx.master_key()).open("wecom_secret").decode()
    except SecretMissing:
        return [_check("wecom", False, "app secret not stored",
                       "缺少企业微信应用密钥：kiosk-provision wecom set-secret。",
                       "The WeCom app secret is missing: kiosk-provision wecom set-secret.")]
    client = client_from_settings(settings.wecom, secret)
    try:
        _ = client.access_token  # a property: fetches (or reuses) the token
    except WecomError as e:
        return [_check("wecom", False, f"gettoken: {e}",
                       "无法获取企业微信访问令牌：检查网络、企业 ID 和应用密钥（IP 白名单）。",
                       "Cannot get a WeCom access token: check the network, corp id, app secret and IP allow list.")]
    return [_check("wecom", True, f"corp {settings.wecom.corp_id}, agent {settings.wecom.agent_id}: token obtained")]


def check_time_sync() -> list[CheckResult]:
    """NTP synchronisation as systemd-timesyncd / chrony report it, where systemd runs."""
    if not shutil.which("timedatectl") or not Path("/run/systemd/system").is_dir():
        return []
    try:
        out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return []
    if out not in ("yes", "no"):
        return []
    return [_check("time_sync", out == "yes", f"NTP synchronised: {out}",
                   "系统时间未同步：检查 NTP 服务器是否可达（timedatectl timesync-status）。",
                   "The clock is not synchronised: check the NTP server can be reached (timedatectl timesync-status).")]


# --- hardware ------------------------------------------------------------------------------


def display_size() -> tuple[int, int] | None:
    """The connected display's preferred mode from DRM (/sys/class/drm), without Qt."""
    for status in sorted(Path("/sys/class/drm").glob("card*-*/status")):
        try:
            if status.read_text().strip() != "connected":
                continue
            modes = (status.parent / "modes").read_text().split()
        except OSError:
            continue
        if modes:
            w, _, h = modes[0].partition("x")
            try:
                return int(w), int(h.rstrip("ip"))
            except ValueError:
                continue
    return None


def check_hardware(ctx: Context, args: argparse.Namespace) -> list[CheckResult]:
    settings = ctx.settings()
    results: list[CheckResult] = []
    camera = mic = None
    try:
        if args.camera_file:
            from hardware.camera import FileCamera
            camera = FileCamera(args.camera_file, pace="real", loop=True)
        else:
            camera = camera_from_settings(settings, loop=True)
    except Exception as e:
        results.append(_check("camera", False, f"{type(e).__name__}: {e}",
                              "摄像头无法打开，请检查连接线。", "The camera could not be opened: check its cable."))
    try:
        if args.mic_file:
            from hardware.microphone import FileMic
            mic = FileMic(args.mic_file, pace="real", loop=True)
        else:
            mic = microphone_from_settings(settings, loop=True)
    except Exception as e:
        results.append(_check("microphone", False, f"{type(e).__name__}: {e}",
                              "麦克风无法打开，请检查连接。", "The microphone could not be opened: check its connection."))
    size = None
    if not args.headless:
        size = display_size()
        if size is None:
            results.append(_check("display", False, "no connected display found",
                                  "没有检测到显示屏：检查视频线；通过 SSH 检测时请加 --headless。",
                                  "No display found: check the video cable; over SSH add --headless."))
    results += run_selftest(settings, camera, mic, display_size=size, duration_s=args.seconds)
    return results


def check_technician_pin(settings: Settings) -> list[CheckResult]:
    """The kiosk's service screen stays shut until a PIN is set (there is no default PIN)."""
    from device.pin import is_pin_hash

    h = settings.kiosk.technician_pin_hash
    if not h:
        return [_check("technician_pin", False, "not set",
                       "未设置维护 PIN，终端上的维护界面无法打开：运行 kiosk-provision pin set。",
                       "No service PIN: the kiosk's service screen cannot be opened. "
                       "Run `kiosk-provision pin set`.")]
    if not is_pin_hash(h):
        return [_check("technician_pin", False, "kiosk.technician_pin_hash is malformed",
                       "维护 PIN 的哈希格式错误：运行 kiosk-provision pin set 重新设置。",
                       "The service PIN hash in the config is malformed: run `kiosk-provision pin set` again.")]
    return [_check("technician_pin", True, "set")]


# --- the command ---------------------------------------------------------------------------


def run_checks(ctx: Context, args: argparse.Namespace) -> list[CheckResult]:
    results: list[CheckResult] = []
    results += _guarded("keys_store", lambda: check_store(ctx),
                        "无法打开加密数据：密钥缺失或不匹配，请联系技术支持。",
                        "The encrypted store does not open: keys missing or wrong, call support.")
    bank_langs: set[str] = set()

    def bank() -> list[CheckResult]:
        nonlocal bank_langs
        res, bank_langs = check_bank(ctx)
        return res

    results += _guarded("question_bank", bank, "题库无法读取。", "The question bank cannot be read.")
    settings = ctx.settings()
    results += check_technician_pin(settings)
    results += _guarded("models", lambda: check_models(settings, bank_langs),
                        "语音模型检测失败。", "The speech model check failed.")
    results += _guarded("hardware", lambda: check_hardware(ctx, args),
                        "硬件检测失败。", "The hardware check failed.")
    if not args.offline:
        results += _guarded("broker", lambda: check_broker(settings),
                            "连不上消息服务器。", "Cannot reach the broker.")
        results += _guarded("https", lambda: check_https(settings),
                            "连不上 HR 接口。", "Cannot reach the HR connector.")
        results += _guarded("wecom", lambda: check_wecom(ctx),
                            "企业微信检测失败。", "The WeCom check failed.")
    results += check_time_sync()
    names = {r.name for r in results}
    # hardware/selftest always adds disk and clock; keep them when hardware creation failed.
    if "disk_free" not in names:
        results += check_disk(Path(settings.paths.data_dir))
    if "clock" not in names:
        results += check_clock()
    return results


def run_selftest_command(ctx: Context, args: argparse.Namespace) -> int:
    ctx.say("正在检测（约 {s:.0f} 秒）……", "Checking (about {s:.0f} s)…", s=args.seconds * 2 + 3)
    results = run_checks(ctx, args)
    failed = [r.name for r in results if not r.ok]
    ctx.record("selftest.run", {"checks": len(results), "failed": failed,
                                "headless": bool(args.headless), "offline": bool(args.offline)})
    if ctx.json_output:
        ctx.emit_json({"ok": not failed, "checks": [r.as_dict() for r in results]})
        return ExitCode.FAILED if failed else ExitCode.OK
    t = Table(title=ctx.tr("自检结果", "Self-test"), title_justify="left")
    t.add_column(ctx.tr("检查项", "Check"))
    t.add_column(ctx.tr("结果", "Result"))
    t.add_column(ctx.tr("数值", "Value"), overflow="fold")
    t.add_column(ctx.tr("处理建议", "What to do"), overflow="fold")
    for r in results:
        mark = "[green]✓ " + ctx.tr("通过", "pass") + "[/]" if r.ok else "[bold red]✗ " + ctx.tr("失败", "FAIL") + "[/]"
        t.add_row(r.name, mark, escape(r.value), escape(r.hint(ctx.lang)))
    ctx.console.print(t)
    if failed:
        ctx.say("[bold red]{n} 项未通过[/]", "[bold red]{n} check(s) failed[/]", n=len(failed))
        return ExitCode.FAILED
    ctx.say("[bold green]全部通过[/]", "[bold green]all checks passed[/]")
    return ExitCode.OK
