"""`kiosk-provision wipe` (crypto-shred) and `rotate-keys`.

Wipe destroys the keys, so every interview on the terminal becomes unreadable at once,
even on flash storage where overwriting files is unreliable. It is audited before the
keys go and leaves a receipt without personal data. Keys are never printed or copied.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.table import Table

from device.keys import MASTER_KEY_FILE, shred_keys
from device.store import DB_FILE
from provisioning.cli import Context, ExitCode, technician
from provisioning.enrol import PENDING_CLIENT_KEY
from provisioning.identity import CLIENT_KEY_FILE, TLS_DIR, make_client_key

log = logging.getLogger("provisioning")

RECEIPT_FILE = "wipe-receipt.json"
SERVICES = ("interview-kiosk.service", "interview-sync.service")


def stop_services(ctx: Context) -> list[str]:
    """Stop the kiosk and the sync daemon when systemd runs them: their open store
    connections hold the key in memory. Returns the units stopped."""
    if os.geteuid() != 0 or not shutil.which("systemctl") or not Path("/run/systemd/system").is_dir():
        return []
    stopped = []
    for unit in SERVICES:
        active = subprocess.run(["systemctl", "is-active", "--quiet", unit], timeout=30).returncode == 0
        if active:
            subprocess.run(["systemctl", "stop", unit], timeout=60, check=False)
            stopped.append(unit)
    if stopped:
        ctx.say("已停止：{u}", "stopped: {u}", u=", ".join(stopped))
    return stopped


def _shred_file(path: Path) -> bool:
    if not path.exists():
        return False
    size = path.stat().st_size
    with open(path, "r+b", buffering=0) as f:
        f.write(secrets.token_bytes(max(size, 1)))
        os.fsync(f.fileno())
    path.unlink()
    return True


def _confirm(ctx: Context, args: argparse.Namespace, device_id: str, undelivered: int) -> bool:
    if args.yes >= 2:
        return True
    if not sys.stdin.isatty():
        ctx.warn("擦除需要确认两次：在终端上交互运行，或加两次 --yes（--yes --yes）",
                 "wipe needs two confirmations: run it interactively, or pass --yes twice (--yes --yes)")
        return False
    ctx.console.print("[bold red]" + ctx.tr(
        "警告：这会销毁本终端的密钥，终端上所有面试数据将永久无法读取。",
        "WARNING: this destroys the terminal's keys; every interview on it becomes unreadable forever.") + "[/]")
    if undelivered:
        ctx.console.print("[bold red]" + ctx.tr(
            "还有 {n} 条记录没有发送给 HR，会一起丢失！",
            "{n} records have not been delivered to HR yet and will be lost!", n=undelivered) + "[/]")
    first = input(ctx.tr("第一次确认：请输入设备编号 {d}：", "First confirmation: type the device id {d}: ",
                         d=device_id)).strip()
    if first != device_id:
        return False
    second = input(ctx.tr("第二次确认：输入 WIPE 立即销毁密钥：", "Second confirmation: type WIPE to destroy the keys now: ")).strip()
    return second == "WIPE"


def run_wipe(ctx: Context, args: argparse.Namespace) -> int:
    settings = ctx.settings()
    key_dir = Path(settings.paths.key_dir)
    data_dir = Path(settings.paths.data_dir)
    if not (key_dir / MASTER_KEY_FILE).exists():
        raise ctx.fail(ExitCode.NOT_INITIALISED, "没有密钥可销毁（设备未初始化或已擦除）",
                       "no keys to destroy (never initialised, or already wiped)")
    store = ctx.store()
    now = time.time()
    stats = store.outbox_stats(now)
    with store.lock:
        sessions = store.db.execute("SELECT count(*) FROM sessions").fetchone()[0]
    if not _confirm(ctx, args, settings.device.id, stats["depth"]):
        ctx.record("device.wipe_aborted", {})
        ctx.warn("未确认，什么都没有改变。", "not confirmed; nothing was changed.")
        return ExitCode.ABORTED
    stopped = stop_services(ctx)
    # Audit first: if anything below fails, the attempt is on record.
    seq = ctx.audit().append(technician(), "device.wipe", {
        "sessions": sessions, "undelivered": stats["depth"], "keep_data": bool(args.keep_data)})
    head = ctx.audit().entries(since_seq=seq - 1, limit=1)
    receipt = {
        "device_id": settings.device.id, "tenant": settings.device.tenant,
        "wiped_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)), "by": technician(),
        "sessions_destroyed": sessions, "undelivered_lost": stats["depth"],
        "audit_last_seq": seq, "audit_last_hash": head[0].hash if head else None,
        "services_stopped": stopped,
    }
    ctx.close()
    destroyed = shred_keys(key_dir)
    for name in (CLIENT_KEY_FILE, PENDING_CLIENT_KEY):
        if _shred_file(key_dir / name):
            destroyed.append(key_dir / name)
    removed: list[str] = []
    if not args.keep_data:
        for suffix in ("", "-wal", "-shm"):
            p = data_dir / (DB_FILE + suffix)
            if p.exists():
                p.unlink()
                removed.append(p.name)
        for d in (Path(settings.paths.media_dir), data_dir / TLS_DIR):
            if d.exists():
                shutil.rmtree(d)
                removed.append(d.name + "/")
    receipt["key_files_destroyed"] = len(destroyed)
    receipt["removed"] = removed
    out = data_dir / RECEIPT_FILE
    out.write_text(json.dumps(receipt, ensure_ascii=False, indent=1) + "\n")
    log.warning("device %s wiped by %s: %d key files destroyed", settings.device.id, technician(), len(destroyed))
    if ctx.json_output:
        ctx.emit_json(receipt)
        return ExitCode.OK
    t = Table(title=ctx.tr("已擦除", "Wiped"), show_header=False, title_justify="left")
    t.add_row(ctx.tr("销毁的密钥文件", "Key files destroyed"), str(len(destroyed)))
    t.add_row(ctx.tr("无法再读取的面试", "Interviews made unreadable"), str(sessions))
    if stats["depth"]:
        t.add_row(ctx.tr("丢失的未发送记录", "Undelivered records lost"), str(stats["depth"]))
    t.add_row(ctx.tr("删除的文件", "Files removed"), ", ".join(removed) or ctx.tr("（保留了加密文件）", "(encrypted files kept)"))
    t.add_row(ctx.tr("擦除凭证", "Receipt"), str(out))
    ctx.console.print(t)
    ctx.say("重新启用：kiosk-provision init，然后重新注册。",
            "To use the terminal again: kiosk-provision init, then enrol again.")
    return ExitCode.OK


MASTER_PENDING = "master.key.new"


def _write_new_key(path: Path, key: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)


def rotate_master(ctx: Context) -> dict:
    """Replace the master key: re-encrypt the store, re-seal the audit chain and the sealed
    secrets, then swap the key file. Resumable: the new key waits in master.key.new until
    everything is under it, and a second run after a crash finishes the job."""
    from device.audit import AuditLog
    from device.keys import SecretBox, SecretTampered, derive_key
    from device.store import Store, StoreKeyError

    settings = ctx.settings()
    key_dir = Path(settings.paths.key_dir)
    db = Path(settings.paths.data_dir) / DB_FILE
    old = ctx.master_key()
    pending = key_dir / MASTER_PENDING
    new = pending.read_bytes() if pending.exists() else None
    resumed = new is not None
    try:
        store = Store.open(db, derive_key(old, "store"))
        rekeyed = False
    except StoreKeyError:
        if new is None:
            raise
        store = Store.open(db, derive_key(new, "store"))
        rekeyed = True
    try:
        if not rekeyed:
            with store.lock:
                media_rows = store.db.execute("SELECT count(*) FROM media").fetchone()[0]
            media_dir = Path(settings.paths.media_dir)
            media_files = sum(1 for p in media_dir.rglob("*") if p.is_file()) if media_dir.exists() else 0
            if media_rows or media_files:
                raise ctx.fail(
                    ExitCode.FAILED,
                    "终端上还有 {n} 个用当前密钥加密的录像录音：等它们发送并按保留期删除后再换主密钥（或 wipe）",
                    "{n} recordings on the terminal are sealed under the current key: rotate the master "
                    "key after they were delivered and purged by retention (or wipe)",
                    n=max(media_rows, media_files))
            report = AuditLog(store, derive_key(old, "audit")).verify()
            if not report.ok:
                raise ctx.fail(ExitCode.FAILED, "审计日志校验失败（{r}），拒绝换密钥",
                               "the audit log does not verify ({r}); refusing to rotate", r=report.reason)
            if new is None:
                new = secrets.token_bytes(32)
                _write_new_key(pending, new)
            store.rekey(derive_key(new, "store"))
        assert new is not None
        audit = AuditLog(store, derive_key(new, "audit"))
        if not audit.verify().ok:
            audit = AuditLog(store, derive_key(old, "audit")).rekey(derive_key(new, "audit"))
        old_box, new_box = SecretBox(key_dir, old), SecretBox(key_dir, new)
        resealed = 0
        sdir = key_dir / "secrets"
        for f in sorted(sdir.iterdir()) if sdir.is_dir() else []:
            if f.name.startswith(".") or not f.is_file():
                continue
            try:
                new_box.open(f.name)
                continue  # already re-sealed by an interrupted run
            except SecretTampered:
                new_box.seal(f.name, old_box.open(f.name))
                resealed += 1
        os.replace(pending, key_dir / MASTER_KEY_FILE)
        fd = os.open(key_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        audit.append(technician(), "keys.rotate", {"master": True, "resumed": resumed,
                                                   "secrets_resealed": resealed})
        with store.lock:
            entries = store.db.execute("SELECT count(*) FROM audit").fetchone()[0]
        return {"master": True, "resumed": resumed, "secrets_resealed": resealed, "audit_entries": entries}
    finally:
        store.close()


def run_rotate_keys(ctx: Context, args: argparse.Namespace) -> int:
    """A new client key and CSR. The current key keeps working until the certificate for
    the new one arrives in an enrolment bundle; `enrol` then swaps them. With --master, also
    a new master key instead (store, audit chain and secrets re-sealed under it)."""
    settings = ctx.settings()
    ctx.master_key()  # refuse on a device that was never initialised
    if args.master:
        stopped = stop_services(ctx)
        try:
            result = rotate_master(ctx)
        finally:
            for unit in stopped:
                subprocess.run(["systemctl", "start", unit], timeout=60, check=False)
        if ctx.json_output:
            ctx.emit_json({"ok": True, **result})
        else:
            ctx.say("[green]✓[/] 主密钥已更换：数据库、审计日志和 {n} 个密文已用新密钥重新加密",
                    "[green]✓[/] master key replaced: store, audit chain and {n} sealed secret(s) re-encrypted",
                    n=result["secrets_resealed"])
        return ExitCode.OK
    result: dict = {"client_key": True}
    key_dir = Path(settings.paths.key_dir)
    pending = key_dir / PENDING_CLIENT_KEY
    if pending.exists():
        _shred_file(pending)
    csr = make_client_key(key_dir, settings.paths.data_dir, settings.device.id, key_name=PENDING_CLIENT_KEY)
    ctx.record("keys.rotate", {"client_key": True})
    result["csr"] = str(csr)
    if ctx.json_output:
        ctx.emit_json({"ok": True, **result})
        return ExitCode.OK
    ctx.say("[green]✓[/] 已生成新的客户端密钥和证书请求 {csr}\n"
            "旧证书在新注册包导入前继续有效。请把 {csr} 交给 HR/IT 运行 interview-hr enrol-device，"
            "再用 kiosk-provision enrol 导入新的注册包。",
            "[green]✓[/] new client key and certificate request {csr}\n"
            "The current certificate keeps working until the new bundle is enrolled: give {csr} "
            "to HR/IT for `interview-hr enrol-device`, then `kiosk-provision enrol` the new bundle.",
            csr=csr)
    return ExitCode.OK
