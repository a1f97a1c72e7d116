"""`kiosk-provision`: the field technician's tool to initialise, enrol, check and repair a
terminal. Parses arguments, builds the context and runs one command; the exit code is
what scripts rely on (see ExitCode). It never prints a secret or candidate data.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.markup import escape

from provisioning.cli import CliError, Context, ExitCode, hand_over, pick_language

log = logging.getLogger("provisioning")


def _version() -> str:
    from provisioning import version_string

    return version_string()


def _parser() -> argparse.ArgumentParser:
    # The shared options work before or after the command (`kiosk-provision status --lang en`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH",
                        help="config file (default: $INTERVIEW_KIOSK_CONFIG or /etc/interview-kiosk/config.toml)")
    common.add_argument("--lang", choices=["zh", "en"], default=argparse.SUPPRESS,
                        help="language of the output (default: from LANG; Chinese)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output where a command has it")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log what happens (no secrets, no candidate data)")

    p = argparse.ArgumentParser(
        prog="kiosk-provision", parents=[common],
        description="Set up, enrol, check and repair an interview kiosk terminal. "
                    "设置、注册、检测和维护面试终端。",
        epilog="exit codes: 0 ok, 1 check failed / input rejected, 2 usage or config error, "
               "3 not initialised, 4 not confirmed, 5 already initialised, 70 internal error",
    )
    p.add_argument("--version", action="version", version=f"kiosk-provision {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_, description=help_)

    c = cmd("init", "create the config, the device keys and the certificate request")
    c.add_argument("--data-dir", metavar="DIR", help="data directory (default /var/lib/interview-kiosk)")
    c.add_argument("--device-id", metavar="ID", help="device id (default: kiosk-<machine id>)")

    c = cmd("enrol", "apply the enrolment bundle from HR (file, or the text of its QR code)")
    c.add_argument("bundle", nargs="?", metavar="BUNDLE", help="bundle file, QR text, or - for stdin")
    c.add_argument("--scan", action="store_true", help="read the bundle's QR code with the terminal camera")
    c.add_argument("--scan-seconds", type=float, default=60.0, help=argparse.SUPPRESS)

    c = cmd("models", "speech models")
    msub = c.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    m = msub.add_parser("install", parents=[common], help="install a vosk model (directory, .zip or .tar.gz)")
    m.add_argument("path", metavar="PATH")
    m.add_argument("--model-lang", choices=["zh", "en"], dest="model_lang",
                   help="language of the model (default: guessed from its name)")
    msub.add_parser("list", parents=[common], help="installed models").add_argument(
        "--check", action="store_true", help="also load each model")

    c = cmd("selftest", "check camera, microphone, models, broker, WeCom, clock and disk")
    c.add_argument("--headless", action="store_true", help="no display check (over SSH, in CI)")
    c.add_argument("--camera-file", metavar="VIDEO", help="play this video instead of the camera")
    c.add_argument("--mic-file", metavar="WAV", help="play this WAV instead of the microphone")
    c.add_argument("--seconds", type=float, default=3.0, help="how long to watch camera and mic")
    c.add_argument("--offline", action="store_true", help="skip the broker and WeCom checks")

    cmd("status", "what this terminal is, what it holds and how far behind its sync is")

    c = cmd("bank", "question banks")
    bsub = c.add_subparsers(dest="bank_command", required=True, metavar="ACTION")
    bsub.add_parser("import", parents=[common], help="import a bank (.xlsx or .json)").add_argument("file")
    bsub.add_parser("list", parents=[common], help="the installed bank's jobs and questions")

    c = cmd("audit", "the tamper-evident audit log")
    asub = c.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    asub.add_parser("verify", parents=[common], help="check the hash chain")
    asub.add_parser("show", parents=[common], help="the latest entries").add_argument(
        "--last", type=int, default=20, metavar="N")

    c = cmd("export-logs", "write a redacted support bundle (no names, transcripts or secrets)")
    c.add_argument("--out", metavar="FILE", help="output .tar.gz (default: ./kiosk-logs-<device>-<time>.tar.gz)")
    c.add_argument("--since", default="7 days ago", help="journal entries since (journalctl syntax)")
    c.add_argument("--include", action="append", default=[], metavar="FILE",
                   help="also include this log file (redacted)")

    c = cmd("wipe", "destroy the keys: every interview on this terminal becomes unreadable")
    c.add_argument("--yes", action="count", default=0, help="give twice to confirm without prompts")
    c.add_argument("--keep-data", action="store_true",
                   help="leave the (now unreadable) encrypted files in place")

    c = cmd("rotate-keys", "new client key and certificate request (then enrol the new bundle)")
    c.add_argument("--master", action="store_true",
                   help="replace the master key instead: re-encrypt the store, the audit chain, "
                        "the sealed secrets and the recordings (services are stopped meanwhile)")

    c = cmd("retention", "delete interviews past their retention (the nightly timer runs this)")
    rsub = c.add_subparsers(dest="retention_command", required=True, metavar="ACTION")
    rsub.add_parser("run", parents=[common], help="purge now")

    c = cmd("pin", "the technician PIN that opens the kiosk's service screen")
    psub = c.add_subparsers(dest="pin_command", required=True, metavar="ACTION")
    psub.add_parser("set", parents=[common],
                    help="set or replace it (typed twice without echo, or --stdin)").add_argument(
        "--stdin", action="store_true", help="read the PIN from the first line of standard input")

    c = cmd("wecom", "WeCom settings")
    wsub = c.add_subparsers(dest="wecom_command", required=True, metavar="ACTION")
    wsub.add_parser("set-secret", parents=[common],
                    help="store the WeCom app secret, encrypted (read from the terminal or stdin)")
    return p


def _handler(args: argparse.Namespace) -> Callable[[Context, argparse.Namespace], int]:
    name = args.command
    if name == "init":
        from provisioning.identity import run_init
        return run_init
    if name == "enrol":
        from provisioning.enrol import run_enrol
        return run_enrol
    if name == "models":
        from provisioning import models
        return models.run_install if args.models_command == "install" else models.run_list
    if name == "selftest":
        from provisioning.selftest import run_selftest_command
        return run_selftest_command
    if name == "status":
        from provisioning.status import run_status
        return run_status
    if name == "bank":
        from provisioning import banks
        return banks.run_import if args.bank_command == "import" else banks.run_list
    if name == "audit":
        from provisioning import auditcmd
        return auditcmd.run_verify if args.audit_command == "verify" else auditcmd.run_show
    if name == "export-logs":
        from provisioning.logs import run_export_logs
        return run_export_logs
    if name == "wipe":
        from provisioning.wipe import run_wipe
        return run_wipe
    if name == "rotate-keys":
        from provisioning.wipe import run_rotate_keys
        return run_rotate_keys
    if name == "retention":
        from provisioning.retention import run_retention
        return run_retention
    if name == "pin":
        from provisioning.pincmd import run_pin_set
        return run_pin_set
    if name == "wecom":
        from provisioning.enrol import run_wecom_set_secret
        return run_wecom_set_secret
    raise AssertionError(name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help / --version (0) or a usage error (2)
        return int(e.code or 0)
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx = Context(
        lang=pick_language(getattr(args, "lang", None)),
        config_arg=getattr(args, "config", None),
        console=Console(highlight=False, soft_wrap=True),
        err=Console(stderr=True, highlight=False),
        json_output=getattr(args, "json", False),
    )
    code: int
    try:
        code = int(_handler(args)(ctx, args))
    except CliError as e:
        ctx.err.print(f"[bold red]{ctx.tr('错误', 'error')}:[/] {escape(str(e))}")
        code = int(e.code)
    except KeyboardInterrupt:
        ctx.err.print(ctx.tr("已中断", "interrupted"))
        code = int(ExitCode.ABORTED)
    except Exception:
        log.exception("kiosk-provision %s failed", args.command)
        ctx.err.print(ctx.tr(
            "内部错误，请运行 kiosk-provision export-logs 并把文件发给技术支持。",
            "internal error: run `kiosk-provision export-logs` and send the file to support."))
        code = int(ExitCode.INTERNAL)
    finally:
        ctx.close()
    if ctx.loaded_settings is not None:
        hand_over(ctx.loaded_settings.paths.data_dir)
    return code


if __name__ == "__main__":
    sys.exit(main())
