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
from provisioning.cli import Context, ExitCode, progress_bar, technician
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
    # The name too must survive a power cut: once the store is re-keyed, this file is the
    # only copy of the key that opens it.
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _recordings(settings, store) -> list[tuple[Path, str | None]]:
    """Every answer recording on the terminal with its `media` row id (None: a file without
    a row, e.g. left by a crash mid-answer; it is re-sealed all the same). Symlinks are
    never followed."""
    data_dir = Path(settings.paths.data_dir)
    with store.lock:
        rows = store.db.execute("SELECT id, path FROM media").fetchall()
    by_path: dict[Path, str | None] = {}
    media_dir = Path(settings.paths.media_dir)
    if media_dir.is_dir():
        for p in media_dir.rglob("*.ikm"):
            if p.is_file() and not p.is_symlink():
                by_path[p.resolve()] = None
    for media_id, path in rows:
        p = Path(path) if Path(path).is_absolute() else data_dir / path
        if p.is_file() and not p.is_symlink():
            by_path[p.resolve()] = media_id
    return sorted(by_path.items())


def _check_space_for_resealing(ctx: Context, recordings: list[tuple[Path, str | None]]) -> None:
    """Each recording is rewritten beside itself before the rename: the largest one must fit
    into the free space, checked before anything is changed."""
    if not recordings:
        return
    largest = max(p.stat().st_size for p, _ in recordings)
    free = shutil.disk_usage(recordings[0][0].parent).free
    if free < largest + (64 << 20):
        raise ctx.fail(ExitCode.FAILED,
                       "空间不足：重新加密录像录音需要 {need} MB 可用空间，只有 {free} MB；清理后再运行",
                       "not enough free space to re-seal the recordings: {need} MB needed, {free} MB "
                       "free; free some space and run it again",
                       need=(largest >> 20) + 64, free=free >> 20)


def _reseal_recordings(ctx: Context, store, recordings: list[tuple[Path, str | None]],
                       old_media: bytes, new_media: bytes) -> dict:
    """Re-seal every recording for the new media key (device.mediacrypt.rewrap_device: header
    only for IKMEDIA2, re-encrypted for IKMEDIA1; one file at a time, atomically), with a
    progress bar by bytes, and keep the `media` rows' size/sha256 in step with the files.
    A file neither key opens is left as it is and counted (it was unreadable before)."""
    from device.mediacrypt import MediaError, rewrap_device

    counts = {"recordings_resealed": 0, "recordings_unreadable": 0}
    if not recordings:
        return counts
    total = sum(p.stat().st_size for p, _ in recordings)
    with progress_bar(ctx, ctx.tr("重新加密录像录音", "Re-sealing recordings"), total) as advance:
        for path, media_id in recordings:
            try:
                done = rewrap_device(path, old_media, new_media, progress=advance)
            except MediaError as e:
                counts["recordings_unreadable"] += 1
                log.warning("recording %s opens with neither the old nor the new key; left as it "
                            "is: %s", path, e)
                continue
            except OSError as e:
                raise ctx.fail(ExitCode.FAILED,
                               "录像 {p} 无法重新加密（{e}）：没有丢失任何数据，排除问题后再次运行 "
                               "rotate-keys --master 完成更换",
                               "recording {p} could not be re-sealed ({e}); nothing is lost: fix "
                               "that and run rotate-keys --master again to finish the rotation",
                               p=path, e=e) from e
            counts["recordings_resealed"] += 1
            if media_id is not None:
                # Like sealing for HR: the uploader sends the file's current length and hash.
                with store.transaction():
                    store.db.execute("UPDATE media SET size = ?, sha256 = ? WHERE id = ?",
                                     (done.size, done.sha256, media_id))
    return counts


def rotate_master(ctx: Context) -> dict:
    """Replace the master key: re-encrypt the store, re-seal the audit chain, the sealed
    secrets and the recordings, then swap the key file. Resumable: the new key waits in
    master.key.new until everything is under it, and a second run after a crash finishes
    the job (each recording is renamed into place whole, so it opens with one of the two)."""
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
        recordings = _recordings(settings, store)
        _check_space_for_resealing(ctx, recordings)
        if not rekeyed:
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
        # Recordings last, while master.key is still the old key: until the swap below, a
        # resumed run can tell each file's state by which key opens it.
        media = _reseal_recordings(ctx, store, recordings, derive_key(old, "media"),
                                   derive_key(new, "media"))
        os.replace(pending, key_dir / MASTER_KEY_FILE)
        fd = os.open(key_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        audit.append(technician(), "keys.rotate", {"master": True, "resumed": resumed,
                                                   "secrets_resealed": resealed, **media})
        with store.lock:
            entries = store.db.execute("SELECT count(*) FROM audit").fetchone()[0]
        return {"master": True, "resumed": resumed, "secrets_resealed": resealed, **media,
                "audit_entries": entries}
    finally:
        store.close()


def run_rotate_keys(ctx: Context, args: argparse.Namespace) -> int:
    """A new client key and CSR. The current key keeps working until the certificate for
    the new one arrives in an enrolment bundle; `enrol` then swaps them. With --master, also
    a new master key instead (store, audit chain, secrets and recordings re-sealed
    under it)."""
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
            ctx.say("[green]✓[/] 主密钥已更换：数据库、审计日志、{n} 个密文和 {r} 个录像录音已用新密钥重新加密",
                    "[green]✓[/] master key replaced: store, audit chain, {n} sealed secret(s) and {r} "
                    "recording(s) re-encrypted",
                    n=result["secrets_resealed"], r=result["recordings_resealed"])
            if result["recordings_unreadable"]:
                ctx.warn("{u} 个录像录音用旧密钥和新密钥都打不开（之前就已损坏或来自擦除前），原样保留",
                         "{u} recording(s) open with neither the old nor the new key (damaged, or "
                         "from before a wipe); left as they were", u=result["recordings_unreadable"])
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
