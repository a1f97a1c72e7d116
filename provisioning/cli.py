"""What every `kiosk-provision` command shares: the language, the exit codes, the rich
console, the device's config, store and audit log, and the hand-over of files to the
service user. It must never print or log a secret, a candidate's name or a transcript.
"""

from __future__ import annotations

import enum
import getpass
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from device.config import SYSTEM_CONFIG, ConfigError, Settings, load_settings, resolve_config_path

if TYPE_CHECKING:
    from device.audit import AuditLog
    from device.store import Store

log = logging.getLogger("provisioning")

DEFAULT_SYSTEM_DATA_DIR = Path("/var/lib/interview-kiosk")


class ExitCode(enum.IntEnum):
    """What scripts can rely on (documented in the README's technician section)."""

    OK = 0
    FAILED = 1            # a check failed or an input was rejected (selftest, audit, bank, model, bundle)
    USAGE = 2             # bad arguments or a bad config file
    NOT_INITIALISED = 3   # no config or no master key: run `kiosk-provision init`
    ABORTED = 4           # the technician did not confirm (wipe)
    ALREADY_DONE = 5      # init on a device that already has its keys
    INTERNAL = 70         # a bug: see `kiosk-provision export-logs`


class CliError(Exception):
    """Ends a command with an exit code and a message already in the technician's language."""

    def __init__(self, code: ExitCode, message: str):
        self.code = code
        super().__init__(message)


def pick_language(arg: str | None) -> str:
    """--lang, else the first locale variable set; Chinese unless it asks for English
    (a bare C/POSIX locale, as on a fresh terminal, counts as no preference)."""
    if arg:
        return arg
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var, "").lower()
        if value.startswith("en"):
            return "en"
        if value.startswith("zh"):
            return "zh"
    return "zh"


def technician() -> str:
    """Who is acting, for the audit log: the login behind sudo if there is one, or
    `system` when a systemd unit runs the command (the nightly retention timer)."""
    user = os.environ.get("SUDO_USER")
    if not user and os.environ.get("INVOCATION_ID") and not sys.stdin.isatty():
        return "system"
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = f"uid{os.getuid()}"
    return f"technician:{user}"


def _escaped(kw: dict[str, Any]) -> dict[str, Any]:
    """Values shown inside rich markup: text escaped, numbers kept for format specs."""
    return {k: v if isinstance(v, int | float) else escape(str(v)) for k, v in kw.items()}


@dataclass
class Context:
    """One command's run: language, output, and lazily opened device state."""

    lang: str
    config_arg: str | None
    console: Console
    err: Console
    json_output: bool = False
    _settings: Settings | None = None
    _store: Store | None = None
    _audit: AuditLog | None = None
    touched: list[Path] = field(default_factory=list)

    # --- language ---------------------------------------------------------------------

    def tr(self, zh: str, en: str, **kw: Any) -> str:
        text = zh if self.lang == "zh" else en
        return text.format(**kw) if kw else text

    def say(self, zh: str, en: str, **kw: Any) -> None:
        """Print a line; the message may use rich markup, the values never do."""
        if not self.json_output:
            self.console.print(self.tr(zh, en, **_escaped(kw)))

    def warn(self, zh: str, en: str, **kw: Any) -> None:
        text = self.tr(zh, en, **_escaped(kw))
        self.err.print(f"[yellow]{text}[/]")

    def fail(self, code: ExitCode, zh: str, en: str, **kw: Any) -> CliError:
        return CliError(code, self.tr(zh, en, **kw))

    # --- device state -----------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return resolve_config_path(self.config_arg)

    def settings(self) -> Settings:
        if self._settings is None:
            path = self.config_path
            if not path.exists():
                raise self.fail(
                    ExitCode.NOT_INITIALISED,
                    "没有配置文件 {path}：请先运行 kiosk-provision init",
                    "no config file at {path}: run `kiosk-provision init` first",
                    path=path,
                )
            try:
                self._settings = load_settings(path)
            except ConfigError as e:
                raise CliError(ExitCode.USAGE, str(e)) from None
        return self._settings

    @property
    def loaded_settings(self) -> Settings | None:
        """The settings if this command got as far as loading them."""
        return self._settings

    def reload_settings(self) -> Settings:
        self._settings = None
        return self.settings()

    def master_key(self) -> bytes:
        from device.keys import DeviceKeyError, MasterKeyMissing, load_master_key

        try:
            return load_master_key(self.settings().paths.key_dir)
        except MasterKeyMissing:
            raise self.fail(
                ExitCode.NOT_INITIALISED,
                "设备没有主密钥（未初始化或已擦除）：请运行 kiosk-provision init",
                "this device has no master key (never initialised, or wiped): "
                "run `kiosk-provision init`",
            ) from None
        except DeviceKeyError as e:
            raise CliError(ExitCode.FAILED, str(e)) from None

    def store(self) -> Store:
        if self._store is None:
            from device.keys import derive_key
            from device.store import DB_FILE, Store, StoreError

            key = derive_key(self.master_key(), "store")
            path = Path(self.settings().paths.data_dir) / DB_FILE
            try:
                self._store = Store.open(path, key)
            except StoreError as e:
                raise CliError(ExitCode.FAILED, str(e)) from None
            self.touched.append(path)
        return self._store

    def audit(self) -> AuditLog:
        if self._audit is None:
            from device.audit import AuditLog
            from device.keys import derive_key

            self._audit = AuditLog(self.store(), derive_key(self.master_key(), "audit"))
        return self._audit

    def record(self, action: str, detail: dict[str, Any] | None = None) -> None:
        """Audit a technician action. Detail holds ids and counts, never personal data."""
        self.audit().append(technician(), action, detail or {})
        log.info("audited %s", action)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
            self._audit = None

    def emit_json(self, data: Any) -> None:
        self.console.print_json(json.dumps(data, ensure_ascii=False, default=str))


def default_data_dir(config_path: Path) -> Path:
    """/var/lib/interview-kiosk for the system config, else a var/ beside the config file."""
    if config_path == SYSTEM_CONFIG:
        return DEFAULT_SYSTEM_DATA_DIR
    return config_path.parent if config_path.parent.name == "var" else config_path.parent / "var"


def hand_over(data_dir: Path) -> None:
    """Give files root created under the data directory to the directory's owner.

    The package makes /var/lib/interview-kiosk owned by the `kiosk` user, and the services
    run as that user; a technician runs this CLI with sudo. Without this, a key or store
    written by root would lock the services out of their own data.
    """
    if os.geteuid() != 0:
        return
    try:
        st = data_dir.stat()
    except FileNotFoundError:
        return
    if st.st_uid == 0:
        return
    for root, dirs, files in os.walk(data_dir):
        for name in dirs + files:
            p = Path(root) / name
            try:
                if p.lstat().st_uid == 0:
                    os.lchown(p, st.st_uid, st.st_gid)
            except FileNotFoundError:
                continue


@contextmanager
def progress_bar(ctx: Context, description: str, total: int | None) -> Iterator[Any]:
    """A rich progress bar on stderr (stdout stays clean for --json and scripts)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=ctx.err, transient=False) as progress:
        task = progress.add_task(description, total=total)

        def advance(n: int) -> None:
            progress.update(task, advance=n)

        yield advance
