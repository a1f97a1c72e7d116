"""`kiosk-provision audit verify` / `audit show`: the hash-chained audit log.

verify exits non-zero when an entry was removed, edited or reordered. Entries carry ids
and counts only, never candidate names or transcripts; show prints them as stored.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json

from rich.markup import escape
from rich.table import Table

from provisioning.cli import Context, ExitCode


def run_verify(ctx: Context, args: argparse.Namespace) -> int:
    report = ctx.audit().verify()
    # Verifying is itself an audited action, recorded after the check so it never masks it.
    ctx.record("audit.verify", {"ok": bool(report.ok), "count": report.count,
                                "first_bad_seq": report.first_bad_seq})
    if ctx.json_output:
        ctx.emit_json({"ok": bool(report.ok), "count": report.count,
                       "first_bad_seq": report.first_bad_seq, "reason": report.reason})
    elif report.ok:
        ctx.say("[green]✓[/] 审计日志完整：{n} 条记录，哈希链校验通过",
                "[green]✓[/] audit log intact: {n} entries, hash chain verified", n=report.count)
    else:
        ctx.err.print("[bold red]✗[/] " + escape(ctx.tr(
            "审计日志被篡改：从第 {seq} 条起无法校验（{reason}）",
            "audit log tampered with: the chain breaks at entry {seq} ({reason})",
            seq=report.first_bad_seq, reason=report.reason)))
    return ExitCode.OK if report.ok else ExitCode.FAILED


def run_show(ctx: Context, args: argparse.Namespace) -> int:
    store = ctx.store()
    with store.lock:
        rows = store.db.execute(
            "SELECT seq, ts, actor, action, detail FROM audit ORDER BY seq DESC LIMIT ?",
            (max(1, args.last),),
        ).fetchall()
    rows.reverse()
    if ctx.json_output:
        ctx.emit_json([{"seq": s, "ts": ts, "actor": a, "action": act, "detail": json.loads(d)}
                       for s, ts, a, act, d in rows])
        return ExitCode.OK
    t = Table(title=ctx.tr("审计日志（最近 {n} 条）", "Audit log (latest {n})", n=len(rows)), title_justify="left")
    for name in (ctx.tr("序号", "#"), ctx.tr("时间", "Time"), ctx.tr("操作者", "Actor"),
                 ctx.tr("操作", "Action"), ctx.tr("详情", "Detail")):
        t.add_column(name)
    for seq, ts, actor, action, detail in rows:
        when = dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        t.add_row(str(seq), when, escape(actor), escape(action), escape(detail))
    ctx.console.print(t)
    return ExitCode.OK
