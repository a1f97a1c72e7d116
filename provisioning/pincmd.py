"""`kiosk-provision pin set`: the technician PIN that opens the kiosk's service screen.
Reads it twice without echo (or once from stdin), writes only its scrypt hash into config
`kiosk.technician_pin_hash` and audits the change. It must never print, log or store the PIN.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from device.config import ConfigError
from device.pin import MAX_DIGITS, MIN_DIGITS_NEW, PinFormatError, check_new_pin, hash_pin
from provisioning.cli import CliError, Context, ExitCode
from provisioning.configfile import update_config


def _read_pin(ctx: Context, from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().strip()
    if not sys.stdin.isatty():
        raise ctx.fail(ExitCode.USAGE, "没有终端可输入 PIN：请加 --stdin 从标准输入读取",
                       "no terminal to type the PIN on: add --stdin to read it from standard input")
    first = getpass.getpass(ctx.tr("新的维护 PIN（{a}-{b} 位数字，不会显示）：",
                                   "New service PIN ({a}-{b} digits, not shown): ",
                                   a=MIN_DIGITS_NEW, b=MAX_DIGITS)).strip()
    check = _checked(ctx, first)
    again = getpass.getpass(ctx.tr("再输入一次：", "Type it again: ")).strip()
    if again != check:
        raise ctx.fail(ExitCode.FAILED, "两次输入的 PIN 不一致，未作更改", "the two PINs differ: nothing changed")
    return check


def _checked(ctx: Context, pin: str) -> str:
    try:
        return check_new_pin(pin)
    except PinFormatError:
        raise ctx.fail(
            ExitCode.FAILED,
            "PIN 须为 {a}-{b} 位数字，且不能是同一数字重复或连续数字（如 123456）；未作更改",
            "the PIN must be {a}-{b} digits, not one repeated digit or a straight run "
            "(like 123456): nothing changed",
            a=MIN_DIGITS_NEW, b=MAX_DIGITS) from None


def run_pin_set(ctx: Context, args: argparse.Namespace) -> int:
    settings = ctx.settings()
    ctx.master_key()  # an uninitialised device says so before asking for anything
    pin = _checked(ctx, _read_pin(ctx, args.stdin))
    replaced = bool(settings.kiosk.technician_pin_hash)
    try:
        update_config(ctx.config_path, {"kiosk": {"technician_pin_hash": hash_pin(pin)}})
    except ConfigError as e:
        raise CliError(ExitCode.USAGE, str(e)) from None
    except PermissionError:
        raise ctx.fail(ExitCode.USAGE, "无法写入 {p}：请用 sudo 运行", "cannot write {p}: run it with sudo",
                       p=ctx.config_path) from None
    ctx.record("technician.pin_set", {"replaced": replaced})
    ctx.say("[green]✓[/] 维护 PIN 已{w}（只保存了它的哈希）。重启 interview-kiosk 后生效。",
            "[green]✓[/] service PIN {w} (only its hash is kept). It applies when interview-kiosk restarts.",
            w=ctx.tr("更换" if replaced else "设置", "replaced" if replaced else "set"))
    return ExitCode.OK
