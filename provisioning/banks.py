"""`kiosk-provision bank import FILE` / `bank list`: question banks from a USB stick.

A bad file is rejected whole with every problem located (sheet, row, column or JSON path)
and the installed bank stays. Never prints candidate data (a bank holds none).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from device.questions import (
    BankError,
    QuestionBank,
    bank_media_root,
    current_bank,
    install_bank,
    load_bank,
)
from provisioning.cli import Context, ExitCode


def _issues_table(ctx: Context, err: BankError) -> Table:
    t = Table(title=ctx.tr("题库有 {n} 处错误，未做任何更改", "{n} problem(s) in the bank; nothing was changed",
                           n=len(err.errors)), title_justify="left")
    t.add_column(ctx.tr("工作表", "Sheet"))
    t.add_column(ctx.tr("行", "Row"), justify="right")
    t.add_column(ctx.tr("列 / 位置", "Column / path"))
    t.add_column(ctx.tr("问题", "Problem"), overflow="fold")
    for issue in err.errors:
        if issue.sheet is not None:
            t.add_row(escape(issue.sheet), "" if issue.row is None else str(issue.row),
                      escape(issue.column or ""), escape(issue.message))
        else:
            t.add_row("", "", escape(issue.path or ctx.tr("（整个文件）", "(whole file)")), escape(issue.message))
    return t


def run_import(ctx: Context, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise ctx.fail(ExitCode.USAGE, "找不到文件 {p}", "no such file: {p}", p=path)
    store = ctx.store()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        bank = load_bank(path)
        # Prompt images/videos are copied off the stick (into <data_dir>/bank-media, where the
        # kiosk looks) before the bank is installed: a missing file rejects the whole import.
        install_bank(store, bank, media_from=path.parent,
                     media_root=bank_media_root(ctx.settings().paths.data_dir))
    except BankError as err:
        ctx.record("bank.import_rejected", {"file": path.name, "sha256": digest,
                                            "problems": len(err.errors)})
        if ctx.json_output:
            ctx.emit_json({"ok": False, "file": str(path), "errors": [
                {"sheet": i.sheet, "row": i.row, "column": i.column, "path": i.path,
                 "message": i.message} for i in err.errors]})
        else:
            ctx.err.print(_issues_table(ctx, err))
        return ExitCode.FAILED
    ctx.record("bank.import", {"file": path.name, "sha256": digest, "version": bank.version,
                               "jobs": len(bank.jobs), "questions": len(bank.questions)})
    if ctx.json_output:
        ctx.emit_json({"ok": True, "version": bank.version, "jobs": [j.id for j in bank.jobs],
                       "questions": len(bank.questions)})
        return ExitCode.OK
    ctx.say("[green]✓[/] 已导入题库 {name} 版本 {v}：{j} 个岗位，{q} 道题",
            "[green]✓[/] imported question bank {name} version {v}: {j} jobs, {q} questions",
            name=bank.name or path.name, v=bank.version, j=len(bank.jobs), q=len(bank.questions))
    ctx.console.print(_jobs_table(ctx, bank))
    return ExitCode.OK


def _jobs_table(ctx: Context, bank: QuestionBank) -> Table:
    t = Table(title=ctx.tr("题库 {name} 版本 {v}（{created}）", "Question bank {name} version {v} ({created})",
                           name=escape(bank.name or ""), v=bank.version, created=bank.created.date()),
              title_justify="left")
    t.add_column(ctx.tr("岗位", "Job"))
    t.add_column(ctx.tr("名称", "Title"))
    t.add_column(ctx.tr("答题语言", "Answers in"))
    t.add_column(ctx.tr("题数", "Questions"), justify="right")
    t.add_column(ctx.tr("通过线", "Pass mark"), justify="right")
    for job in bank.jobs:
        t.add_row(escape(job.id), escape(job.title.text(ctx.lang)), job.language,
                  f"{job.plan.count} / {len(job.plan.questions)}", f"{job.pass_threshold:g}")
    return t


def run_list(ctx: Context, args: argparse.Namespace) -> int:
    bank = current_bank(ctx.store())
    if bank is None:
        if ctx.json_output:
            ctx.emit_json({"installed": False})
        else:
            ctx.warn("没有已安装的题库：kiosk-provision bank import 文件.xlsx",
                     "no question bank installed: kiosk-provision bank import FILE.xlsx")
        return ExitCode.FAILED
    if ctx.json_output:
        ctx.emit_json({"installed": True, "version": bank.version, "name": bank.name,
                       "jobs": [{"id": j.id, "title": j.title.model_dump(), "language": j.language,
                                 "questions": list(j.plan.questions), "count": j.plan.count}
                                for j in bank.jobs]})
        return ExitCode.OK
    ctx.console.print(_jobs_table(ctx, bank))
    return ExitCode.OK
