"""`kiosk-provision init`: who the terminal is and the keys it holds.

Writes the commented default config, creates the master key, the encrypted store and the
client key with its certificate request (CSR). The client key never leaves the device and
no key is ever printed; only the CSR (public) is shown to the technician.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from pathlib import Path

from rich.table import Table

from device.config import ConfigError, default_config_text, load_settings
from device.keys import MASTER_KEY_FILE, create_master_key
from device.store import DB_FILE
from provisioning.cli import Context, ExitCode, default_data_dir

CLIENT_KEY_FILE = "client.key"
TLS_DIR = "tls"
CSR_FILE = "device.csr"


def default_device_id() -> str:
    """kiosk-<first 8 hex of /etc/machine-id>: stable across reinstalls of the same disk."""
    try:
        machine = Path("/etc/machine-id").read_text().strip()
    except OSError:
        machine = ""
    return f"kiosk-{(machine or uuid.uuid4().hex)[:8]}"


def client_key_path(key_dir: Path) -> Path:
    return Path(key_dir) / CLIENT_KEY_FILE


def csr_path(data_dir: Path) -> Path:
    return Path(data_dir) / TLS_DIR / CSR_FILE


def make_client_key(key_dir: Path, data_dir: Path, device_id: str, *, key_name: str = CLIENT_KEY_FILE) -> Path:
    """A new EC key in the key directory and its CSR (CN = device id) in <data_dir>/tls."""
    from sync.pki import make_csr

    csr = make_csr(Path(key_dir) / key_name, device_id)
    out = csr_path(data_dir)
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    out.write_bytes(csr)
    return out


def _move_aside_orphaned_store(ctx: Context, data_dir: Path) -> None:
    """A store without its master key can never be read again (a wipe that kept the files):
    move it aside so the new store starts clean, and say so."""
    db = data_dir / DB_FILE
    if not db.exists():
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in ("", "-wal", "-shm"):
        p = data_dir / (DB_FILE + suffix)
        if p.exists():
            p.rename(p.with_name(f"{p.name}.orphaned-{stamp}"))
    ctx.warn("发现旧的加密数据库（密钥已销毁，无法读取），已改名为 {name}.orphaned-{stamp}",
             "found an encrypted store whose key is gone (unreadable); renamed it to "
             "{name}.orphaned-{stamp}", name=DB_FILE, stamp=stamp)


def run_init(ctx: Context, args: argparse.Namespace) -> int:
    config_path = ctx.config_path
    wanted_dir = Path(args.data_dir).expanduser().absolute() if args.data_dir else None
    if config_path.exists():
        try:
            settings = load_settings(config_path)
        except ConfigError as e:
            raise ctx.fail(ExitCode.USAGE, "现有配置文件有误：\n{e}", "the existing config is invalid:\n{e}", e=e) from None
        if wanted_dir is not None and wanted_dir != Path(settings.paths.data_dir):
            raise ctx.fail(
                ExitCode.USAGE,
                "{path} 已存在且数据目录是 {have}，与 --data-dir {want} 不同",
                "{path} exists and points at data directory {have}, not --data-dir {want}",
                path=config_path, have=settings.paths.data_dir, want=wanted_dir)
        if args.device_id and args.device_id != settings.device.id:
            raise ctx.fail(
                ExitCode.USAGE, "{path} 已存在，设备编号是 {have}", "{path} exists with device id {have}",
                path=config_path, have=settings.device.id)
        wrote_config = False
    else:
        data_dir = wanted_dir or default_data_dir(config_path)
        device_id = args.device_id or default_device_id()
        if (data_dir / "keys" / MASTER_KEY_FILE).exists():
            raise ctx.fail(
                ExitCode.ALREADY_DONE,
                "{dir} 里已有设备密钥。要重新开始，请先运行 kiosk-provision wipe",
                "{dir} already holds device keys; to start over, run `kiosk-provision wipe` first",
                dir=data_dir)
        try:
            text = default_config_text(data_dir, device_id)
        except ConfigError as e:
            raise ctx.fail(ExitCode.USAGE, "设备编号无效：{e}", "invalid device id: {e}", e=e) from None
        config_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        wrote_config = True
    settings = ctx.reload_settings()
    data_dir = Path(settings.paths.data_dir)
    key_dir = Path(settings.paths.key_dir)
    if (key_dir / MASTER_KEY_FILE).exists():
        raise ctx.fail(
            ExitCode.ALREADY_DONE,
            "设备已初始化（{dir} 已有主密钥）。要重新开始，请先运行 kiosk-provision wipe",
            "already initialised: {dir} has a master key. To start over, run `kiosk-provision wipe` first",
            dir=key_dir)

    data_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    _move_aside_orphaned_store(ctx, data_dir)
    create_master_key(key_dir)
    ctx.store()  # creates the encrypted store and its tables
    client_key = client_key_path(key_dir)
    csr = csr_path(data_dir)
    if not client_key.exists():
        csr = make_client_key(key_dir, data_dir, settings.device.id)
    ctx.record("device.init", {"device_id": settings.device.id, "config": str(config_path),
                        "data_dir": str(data_dir), "wrote_config": wrote_config})

    if ctx.json_output:
        ctx.emit_json({"device_id": settings.device.id, "config": str(config_path),
                       "data_dir": str(data_dir), "csr": str(csr), "wrote_config": wrote_config})
        return ExitCode.OK
    table = Table(title=ctx.tr("设备已初始化", "Device initialised"), show_header=False)
    table.add_row(ctx.tr("设备编号", "Device id"), settings.device.id)
    table.add_row(ctx.tr("配置文件", "Config"), str(config_path) + (
        "" if wrote_config else ctx.tr("（沿用现有）", " (kept)")))
    table.add_row(ctx.tr("数据目录", "Data directory"), str(data_dir))
    table.add_row(ctx.tr("密钥目录", "Key directory"), f"{key_dir} (0700)")
    table.add_row(ctx.tr("证书请求", "Certificate request"), str(csr))
    ctx.console.print(table)
    ctx.say(
        "下一步：\n  1. 把 {csr} 交给 HR/IT，运行 interview-hr enrol-device 生成注册包\n"
        "  2. kiosk-provision enrol 注册包文件\n  3. kiosk-provision models install 模型\n"
        "  4. kiosk-provision bank import 题库.xlsx\n"
        "  5. kiosk-provision pin set（维护界面的 PIN，未设置前维护界面无法打开）\n"
        "  6. kiosk-provision selftest",
        "Next:\n  1. give {csr} to HR/IT; they run `interview-hr enrol-device` to make the bundle\n"
        "  2. kiosk-provision enrol BUNDLE\n  3. kiosk-provision models install MODEL\n"
        "  4. kiosk-provision bank import BANK.xlsx\n"
        "  5. kiosk-provision pin set (the service-screen PIN; the screen stays shut until it is set)\n"
        "  6. kiosk-provision selftest",
        csr=csr)
    return ExitCode.OK
